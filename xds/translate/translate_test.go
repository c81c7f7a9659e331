package translate_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/sdk/overlay"
	"github.com/xdsbridge/xdsbridge/xds/translate"
)

var update = flag.Bool("update", false, "rewrite testdata/out from the translator's output")

// input is the format of testdata/in/*.yaml: a few aggregator clusters.
type input struct {
	Clusters []inputCluster `yaml:"clusters"`
}

type inputCluster struct {
	Name string `yaml:"name"`
	// Overlay goes through overlay.Parse, as a plugin's configuration would.
	Overlay map[string]any `yaml:"overlay"`
	// RawOverlay is protojson for a clusterv3.Cluster, marshalled as it is:
	// it reaches Cluster without overlay.Parse's checks.
	RawOverlay map[string]any  `yaml:"raw_overlay"`
	Endpoints  []inputEndpoint `yaml:"endpoints"`
}

type inputEndpoint struct {
	Address string `yaml:"address"`
	Port    uint32 `yaml:"port"`
	Weight  uint32 `yaml:"weight"`
	// Health is a name sdk.ParseHealth knows or a number, for values out of
	// range.
	Health   string         `yaml:"health"`
	Locality inputLocality  `yaml:"locality"`
	Priority uint32         `yaml:"priority"`
	Metadata map[string]any `yaml:"metadata"`
	Hostname string         `yaml:"hostname"`
	Sources  []string       `yaml:"sources"`
}

type inputLocality struct {
	Region  string `yaml:"region"`
	Zone    string `yaml:"zone"`
	SubZone string `yaml:"sub_zone"`
}

// goldenCase is one input file, decoded.
type goldenCase struct {
	name     string
	clusters []*aggregator.Cluster
	// overlayErrs holds overlay.Parse's error per cluster, or "".
	overlayErrs []string
}

func loadInputs(t testing.TB) []goldenCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "in", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/in/*.yaml")
	}
	var out []goldenCase
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var in input
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&in); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		gc := goldenCase{name: strings.TrimSuffix(filepath.Base(f), ".yaml")}
		for _, ic := range in.Clusters {
			c, overlayErr, err := ic.cluster()
			if err != nil {
				t.Fatalf("%s: cluster %q: %v", f, ic.Name, err)
			}
			gc.clusters = append(gc.clusters, c)
			gc.overlayErrs = append(gc.overlayErrs, overlayErr)
		}
		out = append(out, gc)
	}
	return out
}

func (ic inputCluster) cluster() (c *aggregator.Cluster, overlayErr string, err error) {
	c = &aggregator.Cluster{Name: ic.Name}
	if ic.Overlay != nil {
		b, err := overlay.Parse(ic.Overlay)
		if err != nil {
			overlayErr = err.Error()
		}
		c.Overlay = b
	}
	if ic.RawOverlay != nil {
		j, err := json.Marshal(ic.RawOverlay)
		if err != nil {
			return nil, "", err
		}
		var ov clusterv3.Cluster
		if err := protojson.Unmarshal(j, &ov); err != nil {
			return nil, "", fmt.Errorf("raw_overlay: %w", err)
		}
		if c.Overlay, err = proto.Marshal(&ov); err != nil {
			return nil, "", err
		}
	}
	for _, ie := range ic.Endpoints {
		h, err := sdk.ParseHealth(ie.Health)
		if ie.Health == "" {
			h, err = sdk.HealthUnknown, nil
		}
		if n, nerr := strconv.Atoi(ie.Health); nerr == nil {
			h, err = sdk.Health(n), nil
		}
		if err != nil {
			return nil, "", err
		}
		c.Endpoints = append(c.Endpoints, aggregator.Endpoint{
			Endpoint: sdk.Endpoint{
				Address:  ie.Address,
				Port:     ie.Port,
				Weight:   ie.Weight,
				Health:   h,
				Locality: sdk.Locality(ie.Locality),
				Priority: ie.Priority,
				Metadata: ie.Metadata,
				Hostname: ie.Hostname,
			},
			Sources: ie.Sources,
		})
	}
	return c, overlayErr, nil
}

// goldenCluster is one cluster of a testdata/out file.
type goldenCluster struct {
	Name           string          `json:"name"`
	OverlayError   string          `json:"overlay_error,omitempty"`
	ClusterError   string          `json:"cluster_error,omitempty"`
	Cluster        json.RawMessage `json:"cluster,omitempty"`
	LoadAssignment json.RawMessage `json:"load_assignment"`
}

// render is the testdata/out text for gc. protojson's output varies its
// whitespace on purpose; encoding/json re-indents it into a stable form.
func render(t *testing.T, gc goldenCase) []byte {
	t.Helper()
	var out struct {
		Clusters []goldenCluster `json:"clusters"`
	}
	for i, c := range gc.clusters {
		g := goldenCluster{Name: c.Name, OverlayError: gc.overlayErrs[i]}
		cl, err := translate.Cluster(c)
		if err != nil {
			g.ClusterError = err.Error()
		} else {
			g.Cluster = mustProtoJSON(t, cl)
		}
		g.LoadAssignment = mustProtoJSON(t, translate.LoadAssignment(c))
		out.Clusters = append(out.Clusters, g)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mustProtoJSON(t *testing.T, m proto.Message) json.RawMessage {
	t.Helper()
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGolden(t *testing.T) {
	for _, gc := range loadInputs(t) {
		t.Run(gc.name, func(t *testing.T) {
			checkGolden(t, filepath.Join("testdata", "out", gc.name+".json"), render(t, gc))
		})
	}
}

// checkGolden compares got with the golden file at path, or with -update
// writes it there.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (-want +got; run go test -update to accept it):\n%s", path, cmp.Diff(strings.Split(string(want), "\n"), strings.Split(string(got), "\n")))
	}
}

// TestGoldenOutputsParse checks that every golden file decodes back into
// the protos it stands for, so that the files stay meaningful.
func TestGoldenOutputsParse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "out", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		in := filepath.Join("testdata", "in", strings.TrimSuffix(filepath.Base(f), ".json")+".yaml")
		if _, err := os.Stat(in); err != nil {
			t.Errorf("%s: no input %s: delete the file", f, in)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Clusters []goldenCluster }
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range goldenCLAs(t, f, out.Clusters) {
			if err := checkAccepted(g); err != nil {
				t.Errorf("%s: %s: %v", f, g.GetClusterName(), err)
			}
		}
		for _, g := range out.Clusters {
			if g.Cluster == nil {
				continue
			}
			var cl clusterv3.Cluster
			if err := protojson.Unmarshal(g.Cluster, &cl); err != nil {
				t.Errorf("%s: %s: %v", f, g.Name, err)
			} else if err := cl.ValidateAll(); err != nil {
				t.Errorf("%s: %s: %v", f, g.Name, err)
			}
		}
	}
}

// TestDeterministic shuffles the endpoints of every golden input and checks
// that the deterministic marshalling does not change.
func TestDeterministic(t *testing.T) {
	cases := loadInputs(t)
	cases = append(cases, goldenCase{name: "generated", clusters: []*aggregator.Cluster{
		generate(rand.New(rand.NewPCG(1, 2)), "generated", 500, true),
	}})
	for _, gc := range cases {
		for _, c := range gc.clusters {
			want := marshalAll(t, c)
			r := rand.New(rand.NewPCG(3, 4))
			for i := range 20 {
				shuffled := *c
				shuffled.Endpoints = append([]aggregator.Endpoint(nil), c.Endpoints...)
				r.Shuffle(len(shuffled.Endpoints), func(a, b int) {
					shuffled.Endpoints[a], shuffled.Endpoints[b] = shuffled.Endpoints[b], shuffled.Endpoints[a]
				})
				if got := marshalAll(t, &shuffled); !bytes.Equal(got, want) {
					t.Fatalf("%s/%s: shuffle %d changed the output", gc.name, c.Name, i)
				}
			}
		}
	}
}

func marshalAll(t *testing.T, c *aggregator.Cluster) []byte {
	t.Helper()
	opts := proto.MarshalOptions{Deterministic: true}
	b, err := opts.Marshal(translate.LoadAssignment(c))
	if err != nil {
		t.Fatal(err)
	}
	if cl, err := translate.Cluster(c); err == nil {
		cb, err := opts.Marshal(cl)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, cb...)
	}
	return b
}

// generate makes a cluster of n endpoints over a few priorities and
// localities. With dups, some endpoints share an address and port, with
// different attributes, to exercise the tie-breaks.
func generate(r *rand.Rand, name string, n int, dups bool) *aggregator.Cluster {
	c := &aggregator.Cluster{Name: name}
	healths := []sdk.Health{sdk.HealthUnknown, sdk.Healthy, sdk.Unhealthy, sdk.Draining, sdk.Degraded}
	zones := []string{"", "a", "b", "c"}
	for i := range n {
		e := sdk.Endpoint{
			Address:  fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff),
			Port:     8080,
			Weight:   uint32(r.IntN(3)),
			Health:   healths[r.IntN(len(healths))],
			Locality: sdk.Locality{Region: "r1", Zone: zones[r.IntN(len(zones))]},
			Priority: uint32(r.IntN(2)),
		}
		if i%2 == 0 {
			e.Metadata = map[string]any{"version": fmt.Sprintf("v%d", i%3), "canary": i%5 == 0}
		}
		if dups && i%10 == 0 {
			e.Address = "10.255.255.255"
			e.Hostname = fmt.Sprintf("host-%d", r.IntN(3))
		}
		c.Endpoints = append(c.Endpoints, aggregator.Endpoint{Endpoint: e, Sources: []string{"static"}})
	}
	return c
}

// goldenCLAs decodes the load assignments of a testdata/out file.
func goldenCLAs(t *testing.T, file string, gcs []goldenCluster) []*endpointv3.ClusterLoadAssignment {
	t.Helper()
	var out []*endpointv3.ClusterLoadAssignment
	for _, g := range gcs {
		cla := new(endpointv3.ClusterLoadAssignment)
		if err := protojson.Unmarshal(g.LoadAssignment, cla); err != nil {
			t.Fatalf("%s: %s: %v", file, g.Name, err)
		}
		out = append(out, cla)
	}
	return out
}
