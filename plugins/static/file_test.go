package static

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/xdsbridge/xdsbridge/sdk"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with the golden file, or rewrites it with -update.
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

// TestParseValid parses every file in testdata/valid and compares the
// update with the file's .golden twin.
func TestParseValid(t *testing.T) {
	files, err := filepath.Glob("testdata/valid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no valid files")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			upd, errs := parseFile(file, data)
			if len(errs) > 0 {
				t.Fatalf("parseFile(%s):\n%v", file, errs)
			}
			if !upd.Full || upd.Status != nil {
				t.Errorf("update is not a bare full state: Full=%v Status=%v", upd.Full, upd.Status)
			}
			golden(t, strings.TrimSuffix(file, ".yaml")+".golden", render(t, upd))
		})
	}
}

// TestParseInvalid parses every file in testdata/invalid and compares the
// exact error lines with the file's .golden twin.
func TestParseInvalid(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 {
		t.Fatalf("want at least 15 invalid files, found %d", len(files))
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			upd, errs := parseFile(file, data)
			if len(errs) == 0 {
				t.Fatalf("parseFile(%s) = %+v, want errors", file, upd)
			}
			if upd.Full || upd.Clusters != nil || upd.Resources != nil {
				t.Errorf("an invalid file gave data: %+v", upd)
			}
			var lines []string
			for i, e := range errs {
				if e.File != file || e.Line < 1 || e.Path != "" {
					t.Errorf("malformed error %#v", e)
				}
				if i > 0 && errs[i-1].Line > e.Line {
					t.Errorf("errors not sorted by line")
				}
				lines = append(lines, e.Error())
			}
			golden(t, strings.TrimSuffix(file, ".yaml")+".golden", strings.Join(lines, "\n")+"\n")
		})
	}
}

// TestExample keeps the example the documentation points at valid.
func TestExample(t *testing.T) {
	const file = "../../examples/static/seed.yaml"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	upd, errs := parseFile(file, data)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(upd.Clusters) != 1 || len(upd.Resources) != 2 {
		t.Errorf("example serves %d clusters and %d resources, want 1 and 2", len(upd.Clusters), len(upd.Resources))
	}
}

// TestParseDeterministic checks that the same file gives the same bytes,
// which content-hash versions rely on.
func TestParseDeterministic(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	first, _ := parseFile("f", data)
	for range 20 {
		again, _ := parseFile("f", data)
		if diff := cmp.Diff(first, again); diff != "" {
			t.Fatalf("parse differs from the first (-first +again):\n%s", diff)
		}
	}
}

// render shows an update as JSON, with the overlay and resources decoded.
func render(t *testing.T, u sdk.Update) string {
	t.Helper()
	type endpoint struct {
		sdk.Endpoint
		Health string
	}
	type cluster struct {
		Name      string
		Endpoints []endpoint
		Overlay   any
	}
	type resource struct {
		TypeURL, Name string
		Value         any
	}
	var out struct {
		Full      bool
		Clusters  []cluster
		Resources []resource
	}
	out.Full = u.Full
	for _, c := range u.Clusters {
		rc := cluster{Name: c.Name, Endpoints: []endpoint{}}
		for _, e := range c.Endpoints {
			rc.Endpoints = append(rc.Endpoints, endpoint{e, e.Health.String()})
		}
		if c.Overlay != nil {
			m := new(clusterv3.Cluster)
			if err := proto.Unmarshal(c.Overlay, m); err != nil {
				t.Fatal(err)
			}
			rc.Overlay = protoJSON(t, m)
		}
		out.Clusters = append(out.Clusters, rc)
	}
	for _, r := range u.Resources {
		mt, err := protoregistry.GlobalTypes.FindMessageByURL(r.TypeURL)
		if err != nil {
			t.Fatal(err)
		}
		m := mt.New().Interface()
		if err := proto.Unmarshal(r.Value, m); err != nil {
			t.Fatal(err)
		}
		out.Resources = append(out.Resources, resource{r.TypeURL, r.Name, protoJSON(t, m)})
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

// protoJSON converts m to a JSON-like value; going through encoding/json
// removes the random spacing protojson adds to its output.
func protoJSON(t *testing.T, m proto.Message) any {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}
