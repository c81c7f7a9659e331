package consul

import (
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// fakeConsul answers /v1/catalog/services from a script and
// /v1/health/service/web with one instance. Requests past the script block
// like a blocking query with nothing new, until the client gives up.
type fakeConsul struct {
	asked chan struct{} // capacity 1: a catalog request came

	mu      sync.Mutex
	script  []fakeAnswer
	indexes []string // the index parameter of each catalog request
}

type fakeAnswer struct {
	code  int
	index uint64
}

func startFake(t *testing.T, script ...fakeAnswer) (*fakeConsul, string) {
	t.Helper()
	f := &fakeConsul{script: script, asked: make(chan struct{}, 1)}
	srv := httptest.NewServer(f) // binds 127.0.0.1
	t.Cleanup(srv.Close)
	return f, strings.TrimPrefix(srv.URL, "http://")
}

func (f *fakeConsul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v1/catalog/services":
		f.mu.Lock()
		f.indexes = append(f.indexes, r.URL.Query().Get("index"))
		var a *fakeAnswer
		if len(f.script) > 0 {
			a = &f.script[0]
			f.script = f.script[1:]
		}
		f.mu.Unlock()
		select {
		case f.asked <- struct{}{}:
		default:
		}
		if a == nil {
			<-r.Context().Done()
			return
		}
		w.Header().Set("X-Consul-Index", strconv.FormatUint(a.index, 10))
		if a.code != http.StatusOK {
			http.Error(w, http.StatusText(a.code), a.code)
			return
		}
		fmt.Fprint(w, `{"web": ["v1"]}`)
	case "/v1/health/service/web":
		if r.URL.Query().Get("index") != "" {
			<-r.Context().Done()
			return
		}
		w.Header().Set("X-Consul-Index", "7")
		fmt.Fprint(w, `[{"Node": {"Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1"},
			"Service": {"ID": "web-1", "Service": "web", "Port": 80, "Weights": {"Passing": 1, "Warning": 1}},
			"Checks": [{"CheckID": "serfHealth", "Status": "passing"}]}]`)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeConsul) catalogIndexes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.indexes...)
}

func fakeConfig(addr string) Config {
	cfg := DefaultConfig()
	cfg.Address = addr
	cfg.Retry = RetryConfig{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	return cfg
}

// A 429 backs off and retries; it is not a disconnection.
func TestRateLimitedIsNotAFailure(t *testing.T) {
	tooMany := fakeAnswer{code: http.StatusTooManyRequests, index: 1}
	f, addr := startFake(t, tooMany, tooMany, tooMany, fakeAnswer{code: http.StatusOK, index: 3})
	w := startSource(t, fakeConfig(addr), Options{})
	v := w.waitFor("web", endpointsAre("web", "10.0.0.1:80/healthy"))
	for _, u := range v.updates {
		if u.Status != nil && u.Status.State == sdk.Disconnected {
			t.Errorf("429 reported as %+v", *u.Status)
		}
	}
	if got := len(f.catalogIndexes()); got < 4 {
		t.Errorf("%d catalog requests, want at least 4", got)
	}
}

// An error before the first full state is a status update alone; the full
// state follows with Connected once Consul answers.
func TestErrorThenFull(t *testing.T) {
	fail := fakeAnswer{code: http.StatusInternalServerError, index: 1}
	_, addr := startFake(t, fail, fail, fakeAnswer{code: http.StatusOK, index: 3})
	w := startSource(t, fakeConfig(addr), Options{})
	v := w.waitFor("web", endpointsAre("web", "10.0.0.1:80/healthy"))
	first := v.updates[0]
	if first.Full || first.Status == nil || first.Status.State != sdk.Disconnected ||
		!strings.Contains(first.Status.Reason, "HTTP 500") {
		t.Errorf("first update %+v, want a Disconnected status naming HTTP 500", first)
	}
	last := v.updates[len(v.updates)-1]
	if !last.Full || last.Status == nil || last.Status.State != sdk.Connected {
		t.Errorf("last update %+v, want the full state with Connected", last)
	}
}

// The catalog watcher follows Consul's index rules: an index that goes
// backwards resets to a non-blocking read, and 0 is waited on as 1.
func TestIndexRules(t *testing.T) {
	ok := func(i uint64) fakeAnswer { return fakeAnswer{code: http.StatusOK, index: i} }
	f, addr := startFake(t, ok(10), ok(5), ok(0), ok(12))
	startSource(t, fakeConfig(addr), Options{})
	want := []string{"", "10", "", "1", "12"}
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for len(f.catalogIndexes()) < len(want) {
		select {
		case <-f.asked:
		case <-deadline.C:
			t.Fatalf("only %d catalog requests: %q", len(f.catalogIndexes()), f.catalogIndexes())
		}
	}
	if d := cmp.Diff(want, f.catalogIndexes()); d != "" {
		t.Errorf("catalog index parameters (-want +got):\n%s", d)
	}
}

func TestNextIndex(t *testing.T) {
	tests := []struct{ prev, got, want uint64 }{
		{0, 5, 5},
		{5, 5, 5},
		{5, 9, 9},
		{9, 5, 0}, // backwards: reset
		{5, 0, 1}, // never wait on 0
		{0, 0, 1},
	}
	for _, tt := range tests {
		if got := nextIndex(tt.prev, tt.got); got != tt.want {
			t.Errorf("nextIndex(%d, %d) = %d, want %d", tt.prev, tt.got, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := &backoff{initial: 100 * time.Millisecond, max: time.Second}
	wantMax := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, m := range wantMax {
		m *= time.Millisecond
		if d := b.next(); d < m/2 || d > m {
			t.Errorf("delay %d = %v, want within [%v, %v]", i, d, m/2, m)
		}
	}
	b.reset()
	if d := b.next(); d > 100*time.Millisecond {
		t.Errorf("after reset: %v, want at most 100ms", d)
	}
}

// A failing query the full state does not wait for (here shared mode's
// health-state query) must not make every event send a full state.
func TestOneFullWhileAQueryFails(t *testing.T) {
	stateFailed := make(chan struct{}, 16)
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/catalog/services", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("index") != "" {
			<-r.Context().Done()
			return
		}
		w.Header().Set("X-Consul-Index", "5")
		fmt.Fprint(w, `{"s0":[],"s1":[],"s2":[],"s3":[],"s4":[],"s5":[]}`)
	})
	mux.HandleFunc("/v1/health/service/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Consul-Index", "5")
		fmt.Fprint(w, `[{"Node": {"Node": "n1", "Address": "10.0.0.1"}, "Service": {"ID": "x", "Port": 80, "Weights": {"Passing": 1}}}]`)
	})
	mux.HandleFunc("/v1/catalog/nodes", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("index") != "" {
			<-r.Context().Done()
			return
		}
		w.Header().Set("X-Consul-Index", "5")
		fmt.Fprint(w, `[{"Node": "n1", "ModifyIndex": 1}]`)
	})
	mux.HandleFunc("/v1/health/state/any", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
		select {
		case stateFailed <- struct{}{}:
		default:
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	cfg := fakeConfig(strings.TrimPrefix(srv.URL, "http://"))
	cfg.MaxConnections = 4 // 6 services: shared mode
	w := startSource(t, cfg, Options{})
	w.waitFor("full state", hasFull)
	w.waitFor("disconnected", statusIs(sdk.Disconnected, "health state"))
	// Several more failures, so several events, after the full state.
	deadline := time.After(waitTimeout)
	for range 3 {
		select {
		case <-stateFailed:
		case <-deadline:
			t.Fatal("the health-state query was not retried")
		}
	}
	if v := w.waitFor("", hasFull); v.fulls != 1 {
		t.Errorf("%d full states, want 1", v.fulls)
	}
}

// The source reads Consul over https with the CA from tls.ca_file, and
// reports a certificate it cannot verify.
func TestHTTPS(t *testing.T) {
	f := &fakeConsul{asked: make(chan struct{}, 1), script: []fakeAnswer{{code: http.StatusOK, index: 3}}}
	srv := httptest.NewUnstartedServer(f)            // 127.0.0.1
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failing handshake below
	srv.StartTLS()                                   // certificate for example.com and 127.0.0.1
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), pemEncode(srv.Certificate().Raw), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fakeConfig(strings.TrimPrefix(srv.URL, "https://"))
	cfg.Scheme = "https"
	cfg.TLS = TLSConfig{CAFile: "ca.pem", ServerName: "example.com"}
	startSource(t, cfg, Options{BaseDir: dir}).waitFor("web over https", endpointsAre("web", "10.0.0.1:80/healthy"))

	cfg.TLS = TLSConfig{ServerName: "example.com"} // system roots: unknown authority
	startSource(t, cfg, Options{}).waitFor("certificate error", statusIs(sdk.Disconnected, "certificate"))
}

func pemEncode(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
