package static

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/xdsbridge/xdsbridge/sdk"
)

func TestPlugin(t *testing.T) {
	p := Plugin("1.2.3")
	if p.Name != "static" || p.Version != "1.2.3" || p.Configure == nil {
		t.Errorf("Plugin() = %+v", p)
	}
}

func TestConfigure(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "good.yaml"), fileA)
	write(t, filepath.Join(dir, "bad.yaml"), fileBad)
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "sub", "nested.yaml"), fileB)

	tests := []struct {
		name     string
		config   string
		validate bool
		want     sdk.ConfigErrors // nil: a Source
	}{
		{name: "relative path", config: "path: good.yaml"},
		{name: "nested relative path", config: "path: sub/nested.yaml"},
		{name: "absolute path", config: "path: " + filepath.Join(dir, "good.yaml")},
		{name: "validate only", config: "path: good.yaml", validate: true},
		{
			name: "no path", config: "",
			want: sdk.ConfigErrors{{Path: "path", Message: "must be set (the cluster file to serve)"}},
		},
		{
			name: "unknown key", config: "path: good.yaml\npaht: x",
			want: sdk.ConfigErrors{{Path: "paht", Message: `unknown key "paht" (did you mean "path"?)`}},
		},
		{
			name: "missing file", config: "path: nope.yaml",
			want: sdk.ConfigErrors{{Path: "path", Message: "cannot read " + filepath.Join(dir, "nope.yaml") + ": no such file or directory"}},
		},
		{
			name: "invalid file", config: "path: bad.yaml", validate: true,
			want: sdk.ConfigErrors{
				{File: filepath.Join(dir, "bad.yaml"), Line: 4, Message: `clusters[0].endpoints[0].address: "nowhere" is not an IP address (the static plugin does not resolve host names)`},
				{File: filepath.Join(dir, "bad.yaml"), Line: 4, Message: "clusters[0].endpoints[0].port: 0 out of range (1-65535)"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := Plugin("test").Configure(context.Background(), sdk.ConfigureRequest{
				Instance:     "seed",
				Config:       []byte(tt.config),
				BaseDir:      dir,
				ValidateOnly: tt.validate,
			})
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Configure: %v", err)
				}
				if _, ok := src.(*Source); !ok {
					t.Fatalf("Configure returned %T, want *Source", src)
				}
				return
			}
			var got sdk.ConfigErrors
			if !errors.As(err, &got) {
				t.Fatalf("Configure error = %v, want ConfigErrors", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigureServesWhatItValidated(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "clusters.yaml"), fileA)
	src, err := Plugin("test").Configure(context.Background(), sdk.ConfigureRequest{
		Config: []byte("path: clusters.yaml"), BaseDir: dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	up := make(chan sdk.Update)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, up) }()
	wantFull(t, next(t, up), "a", connected)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestNew(t *testing.T) {
	if _, err := New(DefaultConfig(), nil); err == nil {
		t.Error("New(DefaultConfig()) without a path succeeded")
	}
	if err := (Config{Path: "x.yaml"}).Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}
