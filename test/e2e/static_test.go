package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	sotwclient "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
)

const staticPlugins = `plugins:
  - name: files
    type: static
    config:
      path: clusters.yaml
`

// clustersFile renders a static file with one cluster per name, each with
// the given ports on 127.0.0.1.
func clustersFile(clusters map[string][]int) string {
	var b strings.Builder
	b.WriteString("clusters:\n")
	names := make([]string, 0, len(clusters))
	for n := range clusters {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&b, "  - name: %s\n    connect_timeout: 0.25s\n    endpoints:\n", n)
		if len(clusters[n]) == 0 {
			b.WriteString("      []\n")
		}
		for _, p := range clusters[n] {
			fmt.Fprintf(&b, "      - {address: 127.0.0.1, port: %d, locality: {region: r1, zone: z1}}\n", p)
		}
	}
	return b.String()
}

func cla(t testing.TB, a *anypb.Any) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	var c endpointv3.ClusterLoadAssignment
	if err := a.UnmarshalTo(&c); err != nil {
		t.Fatal(err)
	}
	return &c
}

func ports(c *endpointv3.ClusterLoadAssignment) []int {
	var out []int
	for _, l := range c.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			out = append(out, int(e.GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()))
		}
	}
	slices.Sort(out)
	return out
}

// TestShippedExample serves the repository's own plugins.yaml and seed file
// and checks Envoy's fully dynamic example resources: listener_0 via LDS,
// local_route via RDS, some_service via CDS and EDS — on one ADS stream with
// go-control-plane's ADS client for CDS and a raw stream for the rest.
func TestShippedExample(t *testing.T) {
	seed, err := os.ReadFile(filepath.Join("..", "..", "examples", "static", "seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b := startBridge(t, map[string]string{
		"plugins.yaml":              "plugins:\n  - name: seed-example\n    type: static\n    config:\n      path: examples/static/seed.yaml\n",
		"examples/static/seed.yaml": string(seed),
	})
	cc := dial(t, b.grpcAddr)

	// go-control-plane's own SotW ADS client, wildcard CDS.
	ctx := t.Context()
	cds := sotwclient.NewADSClient(ctx, &core.Node{Id: "envoy-1", Cluster: "e2e"}, resource.ClusterType)
	if err := cds.InitConnect(cc); err != nil {
		t.Fatal(err)
	}
	resp, err := cds.Fetch()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Resources) != 1 {
		t.Fatalf("CDS: got %d clusters, want 1", len(resp.Resources))
	}
	var c clusterv3.Cluster
	if err := resp.Resources[0].UnmarshalTo(&c); err != nil {
		t.Fatal(err)
	}
	if c.GetName() != "some_service" || c.GetType() != clusterv3.Cluster_EDS || c.GetConnectTimeout().AsDuration() != 250*time.Millisecond {
		t.Fatalf("CDS: unexpected cluster %v", protojson.Format(&c))
	}
	if err := cds.Ack(); err != nil {
		t.Fatal(err)
	}

	s := newSotw(t, cc, "envoy-1")
	s.subscribe(resource.EndpointType, "some_service")
	r := s.recvType(resource.EndpointType, 10*time.Second)
	if got := ports(cla(t, r.GetResources()[0])); !slices.Equal(got, []int{1234}) {
		t.Fatalf("EDS some_service ports = %v, want [1234]", got)
	}
	s.ack(r, "some_service")
	s.subscribe(resource.ListenerType)
	r = s.recvType(resource.ListenerType, 10*time.Second)
	var l listenerv3.Listener
	if len(r.GetResources()) != 1 || r.GetResources()[0].UnmarshalTo(&l) != nil || l.GetName() != "listener_0" ||
		l.GetAddress().GetSocketAddress().GetPortValue() != 10000 {
		t.Fatalf("LDS: want listener_0 on port 10000, got %d resources", len(r.GetResources()))
	}
	s.ack(r)
	s.subscribe(resource.RouteType, "local_route")
	r = s.recvType(resource.RouteType, 10*time.Second)
	var rc routev3.RouteConfiguration
	if len(r.GetResources()) != 1 || r.GetResources()[0].UnmarshalTo(&rc) != nil || rc.GetName() != "local_route" {
		t.Fatalf("RDS: want local_route")
	}
}

// TestStaticEdits follows a static file through edits on SotW and delta
// streams: one cluster's endpoint change reaches only that cluster's
// subscribers, removal is seen, and versions are content hashes.
func TestStaticEdits(t *testing.T) {
	b := startBridge(t, map[string]string{
		"plugins.yaml":  staticPlugins,
		"clusters.yaml": clustersFile(map[string][]int{"a": {1001}, "b": {2001}}),
	})
	cc := dial(t, b.grpcAddr)

	sa := newSotw(t, cc, "only-a")
	sa.subscribe(resource.EndpointType, "a")
	ra := sa.recvType(resource.EndpointType, 10*time.Second)
	sa.ack(ra, "a")

	sb := newSotw(t, cc, "only-b")
	sb.subscribe(resource.EndpointType, "b")
	rb := sb.recvType(resource.EndpointType, 10*time.Second)
	sb.ack(rb, "b")

	d := newDelta(t, cc, "delta")
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType}) // wildcard
	dr := d.recv(10 * time.Second)
	if len(dr.GetResources()) != 2 {
		t.Fatalf("delta CDS: got %d clusters, want 2", len(dr.GetResources()))
	}
	d.ack(dr)
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"a", "b"}})
	dr = d.recv(10 * time.Second)
	if len(dr.GetResources()) != 2 {
		t.Fatalf("delta EDS: got %d, want 2", len(dr.GetResources()))
	}
	d.ack(dr)

	// Change only a's endpoints.
	b.write("clusters.yaml", clustersFile(map[string][]int{"a": {1001, 1002}, "b": {2001}}))
	ra2 := sa.recvType(resource.EndpointType, 10*time.Second)
	if got := ports(cla(t, ra2.GetResources()[0])); !slices.Equal(got, []int{1001, 1002}) {
		t.Fatalf("a after edit: ports %v", got)
	}
	if ra2.GetVersionInfo() == ra.GetVersionInfo() {
		t.Fatalf("EDS version did not change: %s", ra2.GetVersionInfo())
	}
	sa.ack(ra2, "a")
	dr = d.recv(10 * time.Second)
	if dr.GetTypeUrl() != resource.EndpointType || len(dr.GetResources()) != 1 || dr.GetResources()[0].GetName() != "a" {
		t.Fatalf("delta: want only a's EDS, got %s with %d resources", dr.GetTypeUrl(), len(dr.GetResources()))
	}
	d.ack(dr)
	sb.quiet(500 * time.Millisecond) // b's subscriber hears nothing

	// Remove cluster b: delta CDS sends the removal.
	b.write("clusters.yaml", clustersFile(map[string][]int{"a": {1001, 1002}}))
	dr = d.recv(10 * time.Second)
	if dr.GetTypeUrl() != resource.ClusterType || !slices.Equal(dr.GetRemovedResources(), []string{"b"}) {
		t.Fatalf("delta: want CDS removal of b first, got %s removed=%v", dr.GetTypeUrl(), dr.GetRemovedResources())
	}
}

// TestNACKNotResent: a rejected version is not sent again; the next content
// change is delivered.
func TestNACKNotResent(t *testing.T) {
	b := startBridge(t, map[string]string{
		"plugins.yaml":  staticPlugins,
		"clusters.yaml": clustersFile(map[string][]int{"a": {1001}}),
	})
	s := newSotw(t, dial(t, b.grpcAddr), "nacker")
	s.subscribe(resource.EndpointType, "a")
	r := s.recvType(resource.EndpointType, 10*time.Second)
	s.nack(r, "a") // reject the very first response: version_info stays ""
	s.quiet(time.Second)
	if !strings.Contains(b.log.String(), "NACK") {
		t.Errorf("the NACK was not logged")
	}

	b.write("clusters.yaml", clustersFile(map[string][]int{"a": {1001, 1003}}))
	r2 := s.recvType(resource.EndpointType, 10*time.Second)
	if r2.GetVersionInfo() == r.GetVersionInfo() {
		t.Fatalf("after a change, got the rejected version %s again", r2.GetVersionInfo())
	}
	if got := ports(cla(t, r2.GetResources()[0])); !slices.Equal(got, []int{1001, 1003}) {
		t.Fatalf("ports %v", got)
	}
}

// unspace drops the space protojson may write after a comma.
func unspace(b []byte) string { return strings.ReplaceAll(string(b), ", ", ",") }

// TestREST polls CDS and EDS over REST-JSON: 200 with a version, then 304
// while the client is current.
func TestREST(t *testing.T) {
	b := startBridge(t, map[string]string{
		"plugins.yaml":  staticPlugins,
		"clusters.yaml": clustersFile(map[string][]int{"a": {1001}, "b": {2001}}),
	})
	post := func(path string, req *discovery.DiscoveryRequest) (int, *discovery.DiscoveryResponse) {
		t.Helper()
		body, _ := protojson.Marshal(req)
		resp, err := http.Post("http://"+b.restAddr+path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, nil
		}
		var out discovery.DiscoveryResponse
		if err := protojson.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s: %v\n%s", path, err, data)
		}
		// The body is protojson's encoding of the response (proto field
		// names, compact), byte for byte but for the space protojson puts
		// after commas or not, a choice it makes per binary.
		want, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&out)
		if err != nil {
			t.Fatal(err)
		}
		if unspace(data) != unspace(want) {
			t.Fatalf("%s: body is not protojson's encoding of its response\n got %s\nwant %s", path, data, want)
		}
		return resp.StatusCode, &out
	}
	node := &core.Node{Id: "rest-envoy", Cluster: "e2e"}
	code, cds := post("/v3/discovery:clusters", &discovery.DiscoveryRequest{Node: node})
	if code != 200 || len(cds.GetResources()) != 2 || cds.GetVersionInfo() == "" {
		t.Fatalf("CDS: code %d, %d resources, version %q", code, len(cds.GetResources()), cds.GetVersionInfo())
	}
	// Over REST there is no ADS stream: the clusters fetch their endpoints
	// from the client's REST cluster (xds.rest_cluster, default xds_rest).
	for _, a := range cds.GetResources() {
		var c clusterv3.Cluster
		if err := a.UnmarshalTo(&c); err != nil {
			t.Fatal(err)
		}
		src := c.GetEdsClusterConfig().GetEdsConfig().GetApiConfigSource()
		if src.GetApiType() != core.ApiConfigSource_REST || !slices.Equal(src.GetClusterNames(), []string{"xds_rest"}) {
			t.Fatalf("REST cluster %s: eds_config %v, want REST from xds_rest", c.GetName(), c.GetEdsClusterConfig().GetEdsConfig())
		}
	}
	if code, _ := post("/v3/discovery:clusters", &discovery.DiscoveryRequest{Node: node, VersionInfo: cds.GetVersionInfo()}); code != http.StatusNotModified {
		t.Fatalf("CDS with current version: code %d, want 304", code)
	}
	code, eds := post("/v3/discovery:endpoints", &discovery.DiscoveryRequest{Node: node, ResourceNames: []string{"b"}})
	if code != 200 || len(eds.GetResources()) != 1 || cla(t, eds.GetResources()[0]).GetClusterName() != "b" {
		t.Fatalf("EDS b: code %d", code)
	}
	// A change to a leaves b's REST poller current.
	b.write("clusters.yaml", clustersFile(map[string][]int{"a": {1001, 1002}, "b": {2001}}))
	eventually(t, 10*time.Second, "a's change to be served", func() bool {
		c, r := post("/v3/discovery:endpoints", &discovery.DiscoveryRequest{Node: node, ResourceNames: []string{"a"}})
		return c == 200 && len(ports(cla(t, r.GetResources()[0]))) == 2
	})
	if code, _ := post("/v3/discovery:endpoints", &discovery.DiscoveryRequest{Node: node, ResourceNames: []string{"b"}, VersionInfo: eds.GetVersionInfo()}); code != http.StatusNotModified {
		t.Fatalf("EDS b after a change to a: code %d, want 304", code)
	}
	// Malformed JSON is a 400 with a reason.
	resp, err := http.Post("http://"+b.restAddr+"/v3/discovery:clusters", "application/json", strings.NewReader("{not json"))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || len(msg) == 0 {
		t.Fatalf("malformed JSON: %d %q", resp.StatusCode, msg)
	}
}

// TestPluginKilled: SIGKILL the static plugin; its endpoints stay served,
// watchers see no removal, and the restarted plugin serves new edits.
func TestPluginKilled(t *testing.T) {
	b := startBridge(t, map[string]string{
		"plugins.yaml":  staticPlugins,
		"clusters.yaml": clustersFile(map[string][]int{"a": {1001, 1002}}),
	})
	s := newSotw(t, dial(t, b.grpcAddr), "watcher")
	s.subscribe(resource.EndpointType, "a")
	r := s.recvType(resource.EndpointType, 10*time.Second)
	s.ack(r, "a")

	before := b.sources()["files"]
	if before.State != "running" || before.Pid == 0 {
		t.Fatalf("plugin not running: %+v", before)
	}
	if err := syscall.Kill(before.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the plugin to be restarted", func() bool {
		st := b.sources()["files"]
		return st.State == "running" && st.Pid != before.Pid && st.Restarts >= 1
	})
	s.quiet(300 * time.Millisecond) // same content after the restart: nothing to send

	var res struct {
		Resources []struct {
			Type     string          `json:"type"`
			Name     string          `json:"name"`
			Sources  []string        `json:"sources"`
			Resource json.RawMessage `json:"resource"`
		} `json:"resources"`
	}
	b.getJSON("/debug/resources", &res)
	found := false
	for _, e := range res.Resources {
		if e.Type == resource.EndpointType && e.Name == "a" {
			found = slices.Equal(e.Sources, []string{"files"})
		}
	}
	if !found {
		t.Fatalf("/debug/resources lost cluster a's endpoints or their source")
	}

	b.write("clusters.yaml", clustersFile(map[string][]int{"a": {1001, 1002, 1003}}))
	r2 := s.recvType(resource.EndpointType, 10*time.Second)
	if got := ports(cla(t, r2.GetResources()[0])); !slices.Equal(got, []int{1001, 1002, 1003}) {
		t.Fatalf("after restart and edit: %v", got)
	}
}

// TestVersionsSurviveRestart: a restarted bridge serves the same bytes with
// the same versions, so a reconnecting client sees no change.
func TestVersionsSurviveRestart(t *testing.T) {
	files := map[string]string{
		"plugins.yaml":  staticPlugins,
		"clusters.yaml": clustersFile(map[string][]int{"a": {1001, 1002}, "b": {2001}}),
	}
	get := func() (string, []byte) {
		b := startBridge(t, files)
		s := newSotw(t, dial(t, b.grpcAddr), "n")
		s.subscribe(resource.ClusterType)
		r := s.recvType(resource.ClusterType, 10*time.Second)
		var raw []byte
		for _, a := range r.GetResources() {
			raw = append(raw, a.GetValue()...)
		}
		b.stop()
		return r.GetVersionInfo(), raw
	}
	v1, b1 := get()
	v2, b2 := get()
	if v1 != v2 || !bytes.Equal(b1, b2) {
		t.Fatalf("versions %q vs %q (bytes equal: %v)", v1, v2, bytes.Equal(b1, b2))
	}
}
