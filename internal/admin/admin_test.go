package admin

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/internal/host"
	"github.com/xdsbridge/xdsbridge/internal/security/adminauth"
	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/xds/conns"
	"github.com/xdsbridge/xdsbridge/xds/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixture struct {
	srv     *httptest.Server
	clients *conns.Registry
	agg     *aggregator.Aggregator
	store   *store.Store
	reg     *prometheus.Registry
}

func newFixture(t *testing.T, opts ...func(*Options)) *fixture {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	agg := aggregator.New(aggregator.Options{Logger: logger, Sources: []string{"quiet", "static"}})
	h := host.New(host.Options{Logger: logger, Sink: agg}, []host.Plugin{{Spec: host.Spec{Name: "quiet"}}, {Spec: host.Spec{Name: "static"}}})
	clients := conns.New(conns.Options{History: 10, RESTIdle: time.Minute})
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewSourceCollector(h, agg))
	ready := make(chan struct{})
	st := store.New(logger)
	o := Options{Logger: logger, Ready: ready, Store: st, Host: h, Aggregator: agg, Clients: clients, Metrics: reg}
	for _, f := range opts {
		f(&o)
	}
	s := New(o)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, clients: clients, agg: agg, store: st, reg: reg}
}

func (f *fixture) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// /debug/sources lists every plugin with every field present, even the
// empty ones, so that a script can rely on them.
func TestSources(t *testing.T) {
	f := newFixture(t)
	f.agg.Apply("static", sdk.Update{Full: true, Status: &sdk.Status{State: sdk.Connected}, Clusters: []sdk.Cluster{{Name: ""}}})
	code, body := f.get(t, "/debug/sources")
	if code != http.StatusOK {
		t.Fatalf("GET /debug/sources: %d %s", code, body)
	}
	var out struct {
		Sources  []map[string]any  `json:"sources"`
		Rejected map[string]uint64 `json:"rejected"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Sources) != 2 {
		t.Fatalf("sources = %v", out.Sources)
	}
	for _, key := range []string{"name", "state", "pid", "restarts", "last_error", "last_update", "source_state", "source_reason", "connected", "full_state_received", "clusters", "since", "max_silence", "last_progress", "stale"} {
		if _, ok := out.Sources[0][key]; !ok {
			t.Errorf("source lacks %q: %v", key, out.Sources[0])
		}
	}
	if s := out.Sources[1]; s["name"] != "static" || s["full_state_received"] != true || s["connected"] != false || s["state"] != "starting" {
		t.Errorf("static = %v (not running: not connected)", s)
	}
	if len(out.Rejected) == 0 {
		t.Errorf("no rejected items counted: %s", body)
	}
}

// /debug/clients serves the registry, narrowed by ?node=.
func TestClients(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"a", "b"} {
		c := f.clients.Open(nil, nil)
		c.OpenStream(1, conns.SotWADS, "").Request(&discovery.DiscoveryRequest{Node: &core.Node{Id: id}, TypeUrl: "t"})
	}
	for _, tt := range []struct {
		query string
		want  int
	}{{"", 2}, {"?node=a", 1}, {"?node=zz", 0}} {
		code, body := f.get(t, "/debug/clients"+tt.query)
		var snap conns.Snapshot
		if err := json.Unmarshal([]byte(body), &snap); code != http.StatusOK || err != nil {
			t.Fatalf("GET /debug/clients%s: %d %v", tt.query, code, err)
		}
		if len(snap.Connections) != tt.want || len(snap.Nodes) != tt.want {
			t.Errorf("GET /debug/clients%s: %d connections, %d nodes, want %d", tt.query, len(snap.Connections), len(snap.Nodes), tt.want)
		}
	}
}

// /metrics serves the registry given, source metrics included; pprof is
// mounted when enabled.
func TestMetricsAndPprof(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.PProf = true })
	f.agg.Apply("static", sdk.Update{Full: true, Status: &sdk.Status{State: sdk.Connected}})
	code, body := f.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, want := range []string{
		`xdsbridge_source_connected_state{source="quiet"} 0`,
		`xdsbridge_source_connected_state{source="static"} 0`,
		`xdsbridge_plugin_restarts_total{source="static"} 0`,
		`xdsbridge_plugin_up{source="quiet"} 0`,
		`xdsbridge_source_clusters{source="static"} 0`,
		`xdsbridge_source_stale{source="static"} 0`,
		"xdsbridge_ready 0", // the aggregator has not published
		`xdsbridge_aggregator_rejected_items_total{reason="bad_port"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
		if code, _ := f.get(t, path); code != http.StatusOK {
			t.Errorf("GET %s: %d", path, code)
		}
	}
}

// Without PProf, /debug/pprof/ is not served.
func TestPprofOffByDefault(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
		if code, _ := f.get(t, path); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, code)
		}
	}
}

// testToken is the admin token withToken sets.
const testToken = "0123456789abcdef-admin"

// withToken sets Options.Token to testToken, read from a file.
func withToken(t *testing.T) func(*Options) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := adminauth.NewToken(file, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return func(o *Options) { o.Token = tok }
}

// With a token, everything but the probes needs it.
func TestToken(t *testing.T) {
	const token = testToken
	f := newFixture(t, withToken(t))
	for _, path := range []string{"/metrics", "/debug/clients", "/debug/sources"} {
		if code, _ := f.get(t, path); code != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: %d, want 401", path, code)
		}
		req, _ := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s with the token: %d, want 200", path, resp.StatusCode)
		}
	}
	if code, _ := f.get(t, "/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz without a token: %d, want 200", code)
	}
}

// A non-loopback address without a token is refused before listening.
func TestRunRefusesExposure(t *testing.T) {
	s := New(Options{Logger: slog.New(slog.DiscardHandler), Address: "0.0.0.0:0"})
	err := s.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "admin") {
		t.Fatalf("Run on 0.0.0.0 without a token = %v, want an error", err)
	}
	t.Log(err)
}

func TestConnected(t *testing.T) {
	tests := []struct {
		state, source string
		full          bool
		want          bool
	}{
		{"running", "connected", false, true},
		{"running", "unknown", true, true},
		{"running", "unknown", false, false},
		{"running", "disconnected", true, false},
		{"backoff", "connected", true, false},
		{"stopped", "connected", true, false},
	}
	for _, tt := range tests {
		got := connected(host.Status{State: tt.state, Source: tt.source}, aggregator.SourceStatus{Full: tt.full})
		if got != tt.want {
			t.Errorf("connected(%s, %s, full %v) = %v, want %v", tt.state, tt.source, tt.full, got, tt.want)
		}
	}
}
