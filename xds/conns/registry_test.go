package conns

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/google/go-cmp/cmp"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
)

const cds = "type.googleapis.com/envoy.config.cluster.v3.Cluster"

// clock is a manual clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestRegistry(history int, restIdle time.Duration) (*Registry, *clock) {
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	return New(Options{History: history, RESTIdle: restIdle, Now: c.Now}), c
}

func addr(s string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		panic(err)
	}
	return a
}

func TestClassifySotW(t *testing.T) {
	tests := []struct {
		name string
		req  *discovery.DiscoveryRequest
		want Outcome
	}{
		{"first request", &discovery.DiscoveryRequest{TypeUrl: cds}, Outcome{Verdict: Subscribe}},
		{"reconnect with a version", &discovery.DiscoveryRequest{TypeUrl: cds, VersionInfo: "v0"}, Outcome{Verdict: Subscribe}},
		{"ACK", &discovery.DiscoveryRequest{TypeUrl: cds, VersionInfo: "v1", ResponseNonce: "1"}, Outcome{Verdict: ACK, Nonce: "1", Version: "v1"}},
		{"NACK of a known response", &discovery.DiscoveryRequest{TypeUrl: cds, VersionInfo: "v0", ResponseNonce: "1",
			ErrorDetail: &statuspb.Status{Message: "bad"}}, Outcome{Verdict: NACK, Nonce: "1", Version: "v1"}},
		{"NACK of an unknown response", &discovery.DiscoveryRequest{TypeUrl: cds, ResponseNonce: "9",
			ErrorDetail: &statuspb.Status{Message: "bad"}}, Outcome{Verdict: NACK, Nonce: "9"}},
	}
	r, _ := newTestRegistry(0, time.Minute)
	s := r.Open(addr("10.0.0.1:1000"), addr("10.0.0.2:5678")).OpenStream(1, SotWADS, "")
	s.Response(cds, "v1", "1", 3, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, s.Request(tt.req)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestClassifyDelta(t *testing.T) {
	r, _ := newTestRegistry(0, time.Minute)
	s := r.Open(nil, nil).OpenStream(1, DeltaADS, "")
	if got := s.DeltaRequest(&discovery.DeltaDiscoveryRequest{TypeUrl: cds, Node: &core.Node{Id: "n"}}); got.Verdict != Subscribe {
		t.Errorf("first request = %+v", got)
	}
	s.Response(cds, "v1", "1", 2, 0)
	s.Response(cds, "v2", "2", 1, 1)
	tests := []struct {
		name string
		req  *discovery.DeltaDiscoveryRequest
		want Outcome
	}{
		{"late ACK of the older response", &discovery.DeltaDiscoveryRequest{TypeUrl: cds, ResponseNonce: "1"}, Outcome{Verdict: ACK, Nonce: "1", Version: "v1"}},
		{"ACK", &discovery.DeltaDiscoveryRequest{TypeUrl: cds, ResponseNonce: "2"}, Outcome{Verdict: ACK, Nonce: "2", Version: "v2"}},
		{"NACK", &discovery.DeltaDiscoveryRequest{TypeUrl: cds, ResponseNonce: "2", ErrorDetail: &statuspb.Status{Message: "x"}}, Outcome{Verdict: NACK, Nonce: "2", Version: "v2"}},
		{"subscription change", &discovery.DeltaDiscoveryRequest{TypeUrl: cds, ResourceNamesSubscribe: []string{"a"}}, Outcome{Verdict: Subscribe}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, s.DeltaRequest(tt.req)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	v := r.Snapshot("").Connections[0].Streams[0].Types[0]
	if v.ACKs != 2 || v.NACKs != 1 || !v.Wildcard || len(v.Subscribed) != 1 {
		t.Errorf("type view = %+v", v)
	}
}

// Closing a connection forgets it and its streams and records the
// disconnect; the history keeps the newest History entries.
func TestHistoryBounded(t *testing.T) {
	r, clk := newTestRegistry(3, time.Minute)
	for i := range 5 {
		c := r.Open(addr(fmt.Sprintf("10.0.0.1:%d", 1000+i)), nil)
		s := c.OpenStream(int64(i), SotW, cds)
		s.Request(&discovery.DiscoveryRequest{Node: &core.Node{Id: fmt.Sprintf("n%d", i), Cluster: "c"}, TypeUrl: cds})
		clk.advance(time.Second)
		c.Close(ReasonKeepalive, "silent")
		c.Close(ReasonClientClose, "twice") // no effect
		if s := c.OpenStream(9, SotW, cds); s != nil {
			t.Fatal("a stream opened on a closed connection")
		}
	}
	snap := r.Snapshot("")
	if len(snap.Connections) != 0 || len(snap.Nodes) != 0 {
		t.Fatalf("registry not empty: %+v", snap)
	}
	var got []string
	for _, d := range snap.RecentDisconnects {
		if d.Reason != ReasonKeepalive || d.Detail != "silent" || !d.DisconnectedAt.After(d.ConnectedSince) {
			t.Errorf("disconnect = %+v", d)
		}
		got = append(got, d.Nodes[0].ID)
	}
	if diff := cmp.Diff([]string{"n4", "n3", "n2"}, got); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	if snap.HistorySize != 3 {
		t.Errorf("history size = %d", snap.HistorySize)
	}
	if got := r.Snapshot("n3").RecentDisconnects; len(got) != 1 || got[0].Nodes[0].ID != "n3" {
		t.Errorf("history filtered to n3 = %+v", got)
	}
}

// A REST client is forgotten after RESTIdle without a request.
func TestRESTIdle(t *testing.T) {
	r, clk := newTestRegistry(10, time.Minute)
	node := &core.Node{Id: "poller", UserAgentName: "envoy"}
	f, out := r.Fetch("10.0.0.9:4000", &discovery.DiscoveryRequest{Node: node, TypeUrl: cds})
	if out.Verdict != Subscribe {
		t.Errorf("first fetch = %+v", out)
	}
	f.Response("v1", []string{"a"}, 100)
	if _, out := r.Fetch("10.0.0.9:4001", &discovery.DiscoveryRequest{Node: node, TypeUrl: cds, VersionInfo: "v1"}); out.Verdict != ACK || out.Version != "v1" {
		t.Errorf("fetch at the sent version = %+v, want ACK", out)
	}
	if _, out := r.Fetch("10.0.0.9:4001", &discovery.DiscoveryRequest{Node: node, TypeUrl: cds, VersionInfo: "v1"}); out.Verdict != Subscribe {
		t.Errorf("second poll at the same version = %+v, want no second ACK", out)
	}
	if got := r.Stats().Clients[ClientKey{"rest", ClientEnvoy}]; got != 1 {
		t.Errorf("REST envoy clients = %d", got)
	}
	clk.advance(59 * time.Second)
	if n := len(r.Snapshot("").REST); n != 1 {
		t.Fatalf("REST client forgotten before the idle timeout")
	}
	clk.advance(time.Second)
	snap := r.Snapshot("")
	if len(snap.REST) != 0 || len(snap.Nodes) != 0 {
		t.Errorf("REST client kept after the idle timeout: %+v", snap.REST)
	}
	if d := snap.RecentDisconnects; len(d) != 1 || d[0].Reason != ReasonRESTIdle || d[0].Nodes[0].ID != "poller" || d[0].Transport != "rest" {
		t.Errorf("history = %+v", d)
	}
	f.Response("v2", nil, 1) // a late response for a forgotten client is harmless
	if len(r.Snapshot("").REST) != 0 {
		t.Error("a late response brought the client back")
	}
}

// Stats count connections, streams by kind, and distinct nodes by client.
func TestStats(t *testing.T) {
	r, _ := newTestRegistry(0, time.Minute)
	c1 := r.Open(nil, nil)
	c2 := r.Open(nil, nil)
	r.Open(nil, nil) // no stream yet
	envoy := &core.Node{Id: "e", UserAgentName: "envoy"}
	c1.OpenStream(1, SotWADS, "").Request(&discovery.DiscoveryRequest{Node: envoy, TypeUrl: cds})
	c2.OpenStream(2, SotWADS, "").Request(&discovery.DiscoveryRequest{Node: envoy, TypeUrl: cds}) // same node twice
	c2.OpenStream(1, DeltaADS, "").DeltaRequest(&discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: "g", UserAgentName: "gRPC Go"}, TypeUrl: cds})
	c2.OpenStream(3, SotW, cds) // no request yet: no node
	got := r.Stats()
	want := Stats{
		Connections: 3,
		Streams:     map[Kind]int{SotWADS: 2, DeltaADS: 1, SotW: 1},
		Clients:     map[ClientKey]int{{"grpc", ClientEnvoy}: 1, {"grpc", ClientGRPC}: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestClientType(t *testing.T) {
	for name, want := range map[string]string{"envoy": ClientEnvoy, "Envoy": ClientEnvoy, "grpc-go": ClientGRPC, "gRPC C-core": ClientGRPC, "istio-agent": ClientOther, "": ClientUnknown} {
		if got := ClientType(&Node{UserAgentName: name}); got != want {
			t.Errorf("ClientType(%q) = %q, want %q", name, got, want)
		}
	}
	if got := ClientType(nil); got != ClientUnknown {
		t.Errorf("ClientType(nil) = %q", got)
	}
}

// Methods on nil handles do nothing.
func TestNilHandles(t *testing.T) {
	var c *Conn
	c.Close(ReasonClientClose, "")
	c.RateLimited()
	s := c.OpenStream(1, SotW, cds)
	s.Response(cds, "v", "1", 1, 0)
	s.Written(cds, 10)
	s.Close()
	if out := s.Request(&discovery.DiscoveryRequest{TypeUrl: cds, ResponseNonce: "1"}); out.Verdict != ACK {
		t.Errorf("nil stream classified %+v", out)
	}
	var f *Fetch
	f.Response("v", nil, 1)
	f.NotModified()
}

// BenchmarkRequestResponse is the registry's cost per request and
// response on one stream — what every xDS exchange pays.
func BenchmarkRequestResponse(b *testing.B) {
	r, _ := newTestRegistry(100, time.Minute)
	s := r.Open(nil, nil).OpenStream(1, SotWADS, "")
	node := &core.Node{Id: "bench"}
	names := make([]string, 100)
	for i := range names {
		names[i] = fmt.Sprintf("cluster-%d", i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		nonce := fmt.Sprint(i)
		s.Response(cds, "v", nonce, 100, 0)
		s.Request(&discovery.DiscoveryRequest{Node: node, TypeUrl: cds, ResourceNames: names, VersionInfo: "v", ResponseNonce: nonce})
		s.Written(cds, 1000)
	}
}

// BenchmarkConnectDisconnect is the registry's cost of a client's whole
// life: connection, stream, one exchange, disconnect.
func BenchmarkConnectDisconnect(b *testing.B) {
	r, _ := newTestRegistry(100, time.Minute)
	node := &core.Node{Id: "bench"}
	b.ReportAllocs()
	for b.Loop() {
		c := r.Open(nil, nil)
		s := c.OpenStream(1, SotWADS, "")
		s.Request(&discovery.DiscoveryRequest{Node: node, TypeUrl: cds})
		s.Response(cds, "v", "1", 1, 0)
		s.Close()
		c.Close(ReasonClientClose, "")
	}
}
