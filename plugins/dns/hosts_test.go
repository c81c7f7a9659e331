package dns

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/test/dnsserver"
)

// systemResolver is a net.Resolver whose every query goes to addr: the
// system resolver of a machine whose resolv.conf names that server.
func systemResolver(addr string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

// TestServerByName gives the server by a name that BIND, as the system
// resolver, resolves to itself: absent at first (a clear error), then
// added, removed and added again while the source runs.
func TestServerByName(t *testing.T) {
	t.Parallel()
	srv := dnsserver.Start(t, dnsserver.Config{TTL: 0, Records: []string{"_x._tcp 0 SRV 1 1 80 h", "h 0 A 10.0.0.1"}})
	server := "ns1.example.test:" + port(t, srv.Addr())
	cfg := testConfig([]string{server}, "_x._tcp.example.test.")
	cfg.Names[0].Cluster = "x"
	src, err := New(cfg, Options{Resolver: systemResolver(srv.Addr())})
	if err != nil {
		t.Fatal(err)
	}
	h := run(t, src)

	t.Log("the name does not resolve: the status names the server")
	h.waitStatus(sdk.Disconnected, "_x._tcp.example.test. SRV: "+server+": server name does not resolve")
	t.Logf("reason: %s", h.view.status.Reason)

	t.Log("the name appears: resolved again")
	srv.Add(t, "ns1 0 A 127.0.0.1")
	h.waitEndpoints("x", "10.0.0.1:80 p0 w1")
	h.waitStatus(sdk.Connected)

	t.Log("the name goes away: noticed when its addresses expire, endpoints kept")
	srv.Replace(t, "ns1", mdns.TypeA)
	h.waitStatus(sdk.Disconnected, server+": server name does not resolve")
	if got := h.view.eps("x"); !slices.Equal(got, []string{"10.0.0.1:80 p0 w1"}) {
		t.Fatalf("endpoints = %q", got)
	}

	t.Log("back")
	srv.Add(t, "ns1 0 A 127.0.0.1")
	h.waitStatus(sdk.Connected)
	srv.Replace(t, "_x._tcp", mdns.TypeSRV, "_x._tcp 0 SRV 1 1 81 h")
	h.waitEndpoints("x", "10.0.0.1:81 p0 w1")
}

// TestServerNameCached checks that a server name is resolved once for its
// lifetime, and again after a query to it fails.
func TestServerNameCached(t *testing.T) {
	z := newZone(t, true, srvName+" 0 IN SRV 1 1 80 a.example.", "a.example. 0 IN A 10.0.0.1")
	dnsSrv := startFake(t, z.handler())
	names := startFake(t, newZone(t, false, "ns1.example. 0 IN A 127.0.0.1").handler())
	server := "ns1.example.:" + port(t, dnsSrv.addr)
	cfg := testConfig([]string{server}, srvName)
	cfg.MinRefresh, cfg.MaxRefresh = time.Hour, time.Hour // the addresses' lifetime
	src, err := New(cfg, Options{Resolver: systemResolver(names.addr)})
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(wantErr bool) {
		t.Helper()
		_, err := src.lookup(t.Context(), src.names[0])
		if (err != nil) != wantErr {
			t.Fatalf("lookup error = %v, want error %v", err, wantErr)
		}
	}
	lookup(false)
	resolved := names.queries.Load()
	if resolved == 0 {
		t.Fatal("the server name was not resolved")
	}
	lookup(false)
	if n := names.queries.Load(); n != resolved {
		t.Fatalf("the server name was resolved again within its lifetime (%d queries, then %d)", resolved, n)
	}
	dnsSrv.set(rcode(mdns.RcodeServerFailure))
	lookup(true)
	lookup(true)
	if n := names.queries.Load(); n <= resolved {
		t.Fatalf("the server name was not resolved again after a failure (%d queries, then %d)", resolved, n)
	}
}
