package dns

import (
	"fmt"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/test/dnsserver"
)

// These tests run the source against BIND 9 (named), changing its zone with
// dynamic updates while the source runs. They are skipped when named is not
// installed, unless CI=true.

func TestBINDSRVChanges(t *testing.T) {
	t.Parallel()
	srv := dnsserver.Start(t, dnsserver.Config{
		Zone: "example.test.",
		TTL:  0, // refresh at min_refresh
		Records: []string{
			"a 0 A 10.0.0.1",
			"b 0 A 10.0.0.2",
			"c 0 A 10.0.0.3",
			"c 0 AAAA 2001:db8::3",
		},
	})
	const name = "_http._tcp.example.test."
	cluster := ClusterName(name)
	setSRV := func(records ...string) {
		t.Helper()
		srv.Replace(t, "_http._tcp", mdns.TypeSRV, records...)
	}
	h := run(t, newSource(t, testConfig([]string{srv.Addr()}, name), nil))

	t.Log("NXDOMAIN: the cluster is served empty")
	h.waitFor("empty full state", func(v *view) bool { _, ok := v.clusters[cluster]; return v.full && ok })
	if got := h.view.eps(cluster); len(got) != 0 || h.view.status.State != sdk.Connected {
		t.Fatalf("endpoints %q, status %+v", got, h.view.status)
	}

	t.Log("records appear")
	setSRV("_http._tcp 0 SRV 10 5 8080 a", "_http._tcp 0 SRV 20 1 8080 b")
	h.waitEndpoints(cluster, "10.0.0.1:8080 p0 w5", "10.0.0.2:8080 p1 w1")

	t.Log("add a weight-0 record with both address families")
	srv.Add(t, "_http._tcp 0 SRV 10 0 9090 c")
	h.waitEndpoints(cluster, "10.0.0.1:8080 p0 w500", "10.0.0.3:9090 p0 w1", "[2001:db8::3]:9090 p0 w1", "10.0.0.2:8080 p1 w1")

	t.Log("re-weight")
	setSRV("_http._tcp 0 SRV 10 7 8080 a", "_http._tcp 0 SRV 10 3 9090 c", "_http._tcp 0 SRV 20 1 8080 b")
	h.waitEndpoints(cluster, "10.0.0.1:8080 p0 w7", "10.0.0.3:9090 p0 w3", "[2001:db8::3]:9090 p0 w3", "10.0.0.2:8080 p1 w1")

	t.Log("re-prioritise")
	setSRV("_http._tcp 0 SRV 10 7 8080 a", "_http._tcp 0 SRV 10 3 9090 c", "_http._tcp 0 SRV 5 1 8080 b")
	h.waitEndpoints(cluster, "10.0.0.2:8080 p0 w1", "10.0.0.1:8080 p1 w7", "10.0.0.3:9090 p1 w3", "[2001:db8::3]:9090 p1 w3")

	t.Log("remove")
	setSRV("_http._tcp 0 SRV 5 1 8080 b")
	h.waitEndpoints(cluster, "10.0.0.2:8080 p0 w1")

	t.Log("a target's address changes")
	srv.Replace(t, "b", mdns.TypeA, "b 0 A 10.0.0.20")
	h.waitEndpoints(cluster, "10.0.0.20:8080 p0 w1")

	t.Log("NXDOMAIN again, then recovery")
	setSRV()
	h.waitEndpoints(cluster)
	setSRV("_http._tcp 0 SRV 1 1 8080 a")
	h.waitEndpoints(cluster, "10.0.0.1:8080 p0 w1")
	if h.view.status.State != sdk.Connected {
		t.Fatalf("status %+v", h.view.status)
	}

	t.Log("server down: last endpoints kept, status says why")
	srv.Stop(t)
	h.waitStatus(sdk.Disconnected, name, srv.Addr())
	if got := h.view.eps(cluster); !slices.Equal(got, []string{"10.0.0.1:8080 p0 w1"}) {
		t.Fatalf("endpoints while down = %q", got)
	}
	t.Logf("reason: %s", h.view.status.Reason)

	t.Log("server back: connected, and changes flow again")
	srv.Restart(t)
	h.waitStatus(sdk.Connected)
	setSRV("_http._tcp 0 SRV 1 1 8080 a", "_http._tcp 0 SRV 1 1 8081 a")
	h.waitEndpoints(cluster, "10.0.0.1:8080 p0 w1", "10.0.0.1:8081 p0 w1")
}

func TestBINDLargeAnswer(t *testing.T) {
	t.Parallel()
	// BIND serves at most 100 records of a type at a name by default
	// (max-records-per-type, since 9.18.28).
	const n = 100
	var records, want []string
	for i := range n {
		records = append(records,
			fmt.Sprintf("_big._tcp 0 SRV %d %d 8080 h%d", i%3, i%5+1, i),
			fmt.Sprintf("h%d 0 A 10.2.%d.%d", i, i/256, i%256))
	}
	srv := dnsserver.Start(t, dnsserver.Config{Records: records})
	const name = "_big._tcp.example.test."

	// The answer does not fit a UDP datagram: the test means something.
	q := new(mdns.Msg)
	q.SetQuestion(name, mdns.TypeSRV)
	q.SetEdns0(1232, false)
	r, _, err := (&mdns.Client{Timeout: 2 * time.Second}).Exchange(q, srv.Addr())
	if err != nil || !r.Truncated {
		t.Fatalf("UDP answer: truncated=%v err=%v, want truncated", r != nil && r.Truncated, err)
	}

	for i := range n {
		want = append(want, fmt.Sprintf("10.2.%d.%d:8080 p%d w%d", i/256, i%256, i%3, i%5+1))
	}
	h := run(t, newSource(t, testConfig([]string{srv.Addr()}, name), nil))
	h.waitFor(fmt.Sprintf("%d endpoints", n), func(v *view) bool { return len(v.clusters[ClusterName(name)]) == n })
	if got := h.view.eps(ClusterName(name)); !sameSet(got, want) {
		t.Fatalf("endpoints differ: got %d, want %d; first got %q", len(got), len(want), got[:3])
	}
	if !slices.IsSortedFunc(h.view.clusters[ClusterName(name)], func(a, b sdk.Endpoint) int { return int(a.Priority) - int(b.Priority) }) {
		t.Fatal("endpoints are not sorted by priority")
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestBINDTTLDrivesRefresh(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	tests := []struct {
		name    string
		records []string // the zone at the start
		change  func(t *testing.T, srv *dnsserver.Server)
		want    string
	}{
		{
			name:    "positive TTL",
			records: []string{"_x._tcp 2 SRV 1 1 80 a", "a 2 A 10.0.0.1"},
			change: func(t *testing.T, srv *dnsserver.Server) {
				srv.Replace(t, "_x._tcp", mdns.TypeSRV, "_x._tcp 2 SRV 1 1 81 a")
			},
			want: "10.0.0.1:81 p0 w1",
		},
		{
			name:    "negative TTL from the SOA",
			records: []string{"a 2 A 10.0.0.1"},
			change: func(t *testing.T, srv *dnsserver.Server) {
				srv.Add(t, "_x._tcp 2 SRV 1 1 82 a")
			},
			want: "10.0.0.1:82 p0 w1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := dnsserver.Start(t, dnsserver.Config{Records: tt.records, NegativeTTL: 2, TTL: 2})
			cfg := testConfig([]string{srv.Addr()}, "_x._tcp.example.test.")
			cfg.MaxRefresh = time.Hour
			h := run(t, newSource(t, cfg, nil))
			h.waitFor("full state", func(v *view) bool { return v.full })
			start := time.Now()
			tt.change(t, srv)
			h.waitEndpoints("_x._tcp.example.test", tt.want)
			// The change shows at the next lookup, one TTL (plus at most 10%
			// jitter) after the one before the full state. The upper bound
			// is loose, as a loaded machine may run a timer late.
			if d := time.Since(start); d < ttl-200*time.Millisecond || d > ttl*11/10+time.Second {
				t.Fatalf("change seen after %s, want about %s", d, ttl)
			}
		})
	}
}

func TestBINDAddressRecords(t *testing.T) {
	t.Parallel()
	srv := dnsserver.Start(t, dnsserver.Config{Records: []string{
		"www 0 CNAME host",
		"host 0 A 10.0.0.1",
		"host 0 AAAA 2001:db8::1",
	}})
	cfg := testConfig([]string{srv.Addr()}, "www.example.test.")
	cfg.Type, cfg.Port = TypeAAndAAAA, 8443
	cfg.Names[0].Cluster = "www"
	h := run(t, newSource(t, cfg, nil))
	h.waitEndpoints("www", "10.0.0.1:8443 p0 w0", "[2001:db8::1]:8443 p0 w0")
	srv.Replace(t, "host", mdns.TypeA, "host 0 A 10.0.0.2", "host 0 A 10.0.0.3")
	h.waitEndpoints("www", "10.0.0.2:8443 p0 w0", "10.0.0.3:8443 p0 w0", "[2001:db8::1]:8443 p0 w0")
	srv.Replace(t, "www", mdns.TypeCNAME)
	h.waitEndpoints("www")
}
