package bridge_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xdsbridge/xdsbridge/internal/bridge"
	"github.com/xdsbridge/xdsbridge/internal/config"
	"github.com/xdsbridge/xdsbridge/internal/host"
	"github.com/xdsbridge/xdsbridge/plugins/static"
	"github.com/xdsbridge/xdsbridge/sdk"
)

// pluginEnv makes the test binary, run by the plugin host, serve the
// static plugin instead of running tests.
const pluginEnv = "XDSBRIDGE_BRIDGE_TEST_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(pluginEnv) == "static" {
		sdk.Serve(static.Plugin("test"))
		return
	}
	goleak.VerifyTestMain(m)
}

// TestRun runs the whole data path — the static plugin out of process, the
// host, aggregator, publisher, store, xDS and admin servers — and reads
// what a static file says back over REST.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "static.yaml")
	err := os.WriteFile(file, []byte(`clusters:
  - name: web
    connect_timeout: 0.25s
    endpoints:
      - {address: 10.0.0.7, port: 8080}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.XDS.GRPCAddress, cfg.XDS.RESTAddress, cfg.Admin.Address = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	restart := config.DefaultRestart()
	b, err := bridge.New(bridge.Options{
		Config: cfg,
		Plugins: []host.Plugin{{
			Spec: host.Spec{
				Name:    "files",
				Command: []string{self},
				Env:     append(host.PluginEnv(), pluginEnv+"=static"),
				Config:  fmt.Appendf(nil, "path: %s\n", file),
				BaseDir: dir,
			},
			InitialBackoff: restart.InitialBackoff,
			MaxBackoff:     restart.MaxBackoff,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil once ctx ends", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return after ctx ended")
		}
	}()

	wait, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	select {
	case <-b.Serving():
	case err := <-done:
		t.Fatalf("Run returned before serving: %v", err)
	case <-wait.Done():
		t.Fatal("not serving after 30s")
	}
	_, rest, err := b.Addrs(wait)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ path, want string }{
		{"/v3/discovery:clusters", `"connect_timeout":"0.250s"`},
		{"/v3/discovery:endpoints", `"port_value":8080`},
	} {
		resp, err := http.Post("http://"+rest.String()+tt.path, "application/json", strings.NewReader(`{"node":{"id":"t"}}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := strings.ReplaceAll(string(body), " ", "")
		if resp.StatusCode != http.StatusOK || !strings.Contains(got, `"web"`) || !strings.Contains(got, tt.want) {
			t.Errorf("POST %s = %s %s; want 200 with cluster web and %s", tt.path, resp.Status, body, tt.want)
		}
	}
	if mfs, err := b.Metrics().Gather(); err != nil || !hasMetric(mfs, "xdsbridge_plugin_up") {
		t.Errorf("metrics lack xdsbridge_plugin_up (err %v)", err)
	}
	if s := b.Sources(); len(s) != 1 || s[0].Name != "files" {
		t.Errorf("Sources() = %+v, want the one plugin", s)
	}
}

func hasMetric[M interface{ GetName() string }](mfs []M, name string) bool {
	for _, mf := range mfs {
		if mf.GetName() == name {
			return true
		}
	}
	return false
}

// TestNewSecurityErrors: files the configuration names that cannot be
// loaded stop New, naming the key.
func TestNewSecurityErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name string
		edit func(*config.Config)
		want string
	}{
		{"tls", func(c *config.Config) { c.XDS.TLS = &config.TLS{CertFile: missing, KeyFile: missing} }, "xds.tls: "},
		{"token", func(c *config.Config) { c.Admin.TokenFile = missing }, "admin.token_file: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			tt.edit(cfg)
			_, err := bridge.New(bridge.Options{Config: cfg})
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error starting %q", err, tt.want)
			}
		})
	}
}
