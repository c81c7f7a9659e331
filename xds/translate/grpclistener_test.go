package translate_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"

	"gopkg.in/yaml.v3"

	"github.com/xdsbridge/xdsbridge/xds/translate"
)

// grpcInput is the format of testdata/grpc/in/*.yaml: a target name
// template, the passthrough resources served beside the generated ones, and
// a few clusters.
type grpcInput struct {
	Name        string            `yaml:"name"`
	Passthrough []grpcPassthrough `yaml:"passthrough"`
	Clusters    []inputCluster    `yaml:"clusters"`
}

type grpcPassthrough struct {
	Type string `yaml:"type"` // Listener or RouteConfiguration
	Name string `yaml:"name"`
}

// grpcGolden is one cluster of a testdata/grpc/out file.
type grpcGolden struct {
	Cluster      string          `json:"cluster"`
	OverlayError string          `json:"overlay_error,omitempty"`
	Error        string          `json:"error,omitempty"`
	Target       string          `json:"target,omitempty"`
	Shadowed     []string        `json:"shadowed,omitempty"`
	Listener     json.RawMessage `json:"listener,omitempty"`
	Route        json.RawMessage `json:"route,omitempty"`
}

func loadGRPCInput(t *testing.T, path string) grpcInput {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var in grpcInput
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&in); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return in
}

// renderGRPC is the testdata/grpc/out text for in.
func renderGRPC(t *testing.T, in grpcInput) []byte {
	t.Helper()
	tmpl, err := template.New("name").Option("missingkey=error").Parse(in.Name)
	if err != nil {
		t.Fatal(err)
	}
	passthrough := func(typeURL, name string) bool {
		return slices.Contains(in.Passthrough, grpcPassthrough{Type: typeURL[strings.LastIndex(typeURL, ".")+1:], Name: name})
	}
	var out []grpcGolden
	for _, ic := range in.Clusters {
		c, overlayErr, err := ic.cluster()
		if err != nil {
			t.Fatal(err)
		}
		g := grpcGolden{Cluster: c.Name, OverlayError: overlayErr}
		gt, err := translate.GRPCListener(tmpl, c, passthrough)
		if err != nil {
			g.Error = err.Error()
			out = append(out, g)
			continue
		}
		g.Target, g.Shadowed = gt.Name, gt.Shadowed
		if gt.Listener != nil {
			g.Listener = mustProtoJSON(t, gt.Listener)
		}
		if gt.Route != nil {
			g.Route = mustProtoJSON(t, gt.Route)
		}
		out = append(out, g)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(map[string]any{"targets": out}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestGRPCGolden: the generated gRPC listeners and routes of
// testdata/grpc/in/*.yaml are testdata/grpc/out/*.json (-update rewrites
// them).
func TestGRPCGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "grpc", "in", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/grpc/in/*.yaml (%v)", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			checkGolden(t, filepath.Join("testdata", "grpc", "out", name+".json"), renderGRPC(t, loadGRPCInput(t, f)))
		})
	}
}
