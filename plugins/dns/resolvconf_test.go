package dns

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/test/dnsserver"
)

// These tests run the source on a resolv.conf in a temporary directory whose
// nameserver is BIND (named), as the system resolver's configuration.

// writeResolvConf replaces path with a new file holding lines, as resolvconf
// and systemd-resolved do (write, then rename).
func writeResolvConf(t *testing.T, path string, lines ...string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// port is the port of a "127.0.0.1:port" address.
func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestResolvConfReadAgain changes the search list of resolv.conf while the
// source runs: by rename, rewritten in place, and broken (kept as it was).
func TestResolvConfReadAgain(t *testing.T) {
	t.Parallel()
	srv := dnsserver.Start(t, dnsserver.Config{TTL: 0, Records: []string{
		"_http._tcp.web.a 0 SRV 1 1 8080 h",
		"_http._tcp.web.b 0 SRV 1 1 9090 h",
		"h 0 A 10.0.0.1",
	}})
	path := filepath.Join(t.TempDir(), "resolv.conf")
	search := func(domain string) []string {
		return []string{"search " + domain, "nameserver 127.0.0.1", "options ndots:5 timeout:1 attempts:2"}
	}
	writeResolvConf(t, path, search("a.example.test")...)
	cfg := testConfig(nil)
	cfg.Names = []Name{{Name: "_http._tcp.web", Cluster: "web"}}
	var logs logBuffer
	src, err := New(cfg, Options{Logger: logs.logger(), ResolvConf: path, nameserverPort: port(t, srv.Addr())})
	if err != nil {
		t.Fatal(err)
	}
	h := run(t, src)
	h.waitEndpoints("web", "10.0.0.1:8080 p0 w1")

	t.Log("replaced: the new search list applies")
	writeResolvConf(t, path, search("b.example.test")...)
	h.waitEndpoints("web", "10.0.0.1:9090 p0 w1")

	t.Log("rewritten in place")
	if err := os.WriteFile(path, []byte(strings.Join(search("a.example.test"), "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitEndpoints("web", "10.0.0.1:8080 p0 w1")

	t.Log("no nameserver: the last configuration stays, with a warning")
	writeResolvConf(t, path, "search b.example.test")
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(logs.String(), "lists no nameserver") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning about the broken file; logs:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.quiet(5 * cfg.MinRefresh)
	if h.view.status.State != sdk.Connected {
		t.Fatalf("status %+v", h.view.status)
	}
	if n := strings.Count(logs.String(), "lists no nameserver"); n != 1 {
		t.Errorf("the broken file was warned about %d times, want once", n)
	}

	t.Log("fixed again")
	writeResolvConf(t, path, search("b.example.test")...)
	h.waitEndpoints("web", "10.0.0.1:9090 p0 w1")
}

// TestResolvConfTimeoutAndAttempts puts a relay that drops the first
// queries between the source and BIND, and checks that resolv.conf's
// timeout and attempts (or the plugin's attempts) decide whether and when
// the lookup succeeds.
func TestResolvConfTimeoutAndAttempts(t *testing.T) {
	t.Parallel()
	srv := dnsserver.Start(t, dnsserver.Config{Records: []string{"_x._tcp 0 SRV 1 1 80 h", "h 0 A 10.0.0.1"}})
	tests := []struct {
		name     string
		options  string
		attempts int // the plugin's; 0: unset
		drop     int64
		wantErr  bool
		// The lookup takes about drop timeouts (1s each); the default
		// timeout (5s) would take far longer.
		min, max time.Duration
	}{
		{name: "third attempt answers", options: "timeout:1 attempts:3", drop: 2, min: 2 * time.Second, max: 4 * time.Second},
		{name: "two attempts are not enough", options: "timeout:1 attempts:2", drop: 2, wantErr: true, min: 2 * time.Second, max: 4 * time.Second},
		{name: "the plugin's attempts win", options: "timeout:1 attempts:3", attempts: 1, drop: 1, wantErr: true, min: time.Second, max: 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var queries atomic.Int64
			relay := startFake(t, func(w mdns.ResponseWriter, r *mdns.Msg) {
				if queries.Add(1) <= tt.drop {
					return // lost
				}
				m, _, err := (&mdns.Client{Timeout: 2 * time.Second}).Exchange(r, srv.Addr())
				if err != nil {
					t.Errorf("relay to named: %v", err)
					return
				}
				_ = w.WriteMsg(m)
			})
			path := filepath.Join(t.TempDir(), "resolv.conf")
			writeResolvConf(t, path, "nameserver 127.0.0.1", "options "+tt.options)
			cfg := testConfig(nil, "_x._tcp.example.test.")
			cfg.Timeout, cfg.Attempts = 0, tt.attempts
			src, err := New(cfg, Options{ResolvConf: path, nameserverPort: port(t, relay.addr)})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			a, err := src.lookup(t.Context(), src.names[0])
			took := time.Since(start)
			switch {
			case tt.wantErr && (err == nil || !strings.Contains(err.Error(), relay.addr+": timeout")):
				t.Errorf("lookup error = %v, want a timeout at %s", err, relay.addr)
			case !tt.wantErr && (err != nil || len(a.endpoints) != 1):
				t.Errorf("lookup = %+v, %v; want one endpoint", a.endpoints, err)
			}
			if took < tt.min || took > tt.max {
				t.Errorf("lookup took %s, want within [%s, %s]", took, tt.min, tt.max)
			}
			wantQueries := tt.drop + 1
			if tt.wantErr {
				wantQueries = tt.drop
			}
			if got := queries.Load(); got != wantQueries {
				t.Errorf("%d queries, want %d", got, wantQueries)
			}
		})
	}
}
