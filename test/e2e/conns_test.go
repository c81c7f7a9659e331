package e2e

import (
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"golang.org/x/net/http2"

	"github.com/xdsbridge/xdsbridge/xds/conns"
)

// evictionSlack covers what is not the keepalive: the 20 ms polling of the
// admin endpoint and scheduling on a busy machine.
const evictionSlack = time.Second

// waitEvicted polls /debug/clients and the connected-clients gauge from
// the moment the client vanished until both say it is gone, and returns how
// long that took. It fails the test beyond evictionBound+evictionSlack.
func waitEvicted(t *testing.T, b *bridge, node string, vanished time.Time) time.Duration {
	t.Helper()
	deadline := vanished.Add(evictionBound + evictionSlack)
	for {
		g, _ := b.metric("xdsbridge_xds_connected_clients", `client="grpc"`, `transport="grpc"`)
		if !b.hasNode(node) && g == 0 {
			return time.Since(vanished)
		}
		if time.Now().After(deadline) {
			t.Fatalf("client %s still connected %v after it vanished (bound %v + slack %v); gauge %v\n%+v",
				node, time.Since(vanished).Round(time.Millisecond), evictionBound, evictionSlack, g, b.clients().Connections)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkKeepaliveDisconnect asserts that the newest disconnect of node is a
// keepalive timeout, and that it was counted.
func checkKeepaliveDisconnect(t *testing.T, b *bridge, node string, vanished time.Time) {
	t.Helper()
	var s conns.Snapshot
	b.getJSON("/debug/clients?node="+node, &s)
	if len(s.RecentDisconnects) == 0 || s.RecentDisconnects[0].Reason != conns.ReasonKeepalive {
		t.Errorf("recent disconnects of %s = %+v, want a keepalive timeout", node, s.RecentDisconnects)
	} else {
		d := s.RecentDisconnects[0]
		t.Logf("disconnect recorded %v after the client vanished: %s (%s)", d.DisconnectedAt.Sub(vanished).Round(time.Millisecond), d.Reason, d.Detail)
	}
	if v, _ := b.metric("xdsbridge_xds_disconnects_total", `reason="keepalive timeout"`); v != 1 {
		t.Errorf("xdsbridge_xds_disconnects_total{reason=\"keepalive timeout\"} = %v, want 1", v)
	}
}

// A client in a network namespace whose link is cut — its socket never
// closed, no FIN, no RST — leaves /debug/clients and the connected-clients
// gauge within xds.keepalive time + timeout.
func TestVanishedClientLinkCut(t *testing.T) {
	ns := newNetns(t)
	b := startBridgeXDS(t, freePortOn(t, ns.HostIP), shortKeepalive, map[string][]int{"web": {8080}})
	const node = "netns-client"
	startHelperClient(t, b.grpcAddr, node, "ip", "netns", "exec", ns.Name)
	eventually(t, 5*time.Second, "the namespaced client connected", func() bool { return b.hasNode(node) })
	if g, _ := b.metric("xdsbridge_xds_connected_clients", `client="grpc"`, `transport="grpc"`); g != 1 {
		t.Fatalf("connected clients gauge = %v, want 1", g)
	}
	for _, c := range b.clients().Connections {
		if c.Node != nil && c.Node.ID == node && !strings.HasPrefix(c.Peer, ns.NSIP+":") {
			t.Errorf("peer = %s, want the namespace's address %s", c.Peer, ns.NSIP)
		}
	}

	// Let the server's keepalive run against the healthy client first.
	time.Sleep(1500 * time.Millisecond)
	if !b.hasNode(node) {
		t.Fatal("a healthy idle client was disconnected")
	}
	ns.cut(t)
	vanished := time.Now()
	took := waitEvicted(t, b, node, vanished)
	t.Logf("link cut: gone from /debug/clients and the gauge %v after (bound %v)", took.Round(time.Millisecond), evictionBound)
	checkKeepaliveDisconnect(t, b, node, vanished)
}

// A client process stopped with SIGSTOP — its kernel still acknowledges
// TCP, only the HTTP/2 PING goes unanswered — leaves /debug/clients and
// the gauge within time + timeout.
func TestVanishedClientStopped(t *testing.T) {
	b := startBridgeXDS(t, freePort(t), shortKeepalive, map[string][]int{"web": {8080}})
	const node = "stopped-client"
	h := startHelperClient(t, b.grpcAddr, node)
	eventually(t, 5*time.Second, "the client connected", func() bool { return b.hasNode(node) })
	time.Sleep(1500 * time.Millisecond)
	if !b.hasNode(node) {
		t.Fatal("a healthy idle client was disconnected")
	}
	if err := h.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	vanished := time.Now()
	took := waitEvicted(t, b, node, vanished)
	t.Logf("SIGSTOP: gone from /debug/clients and the gauge %v after (bound %v)", took.Round(time.Millisecond), evictionBound)
	checkKeepaliveDisconnect(t, b, node, vanished)
}

// A client that pings the way Envoy's connection_keepalive does (an
// interval with 15% jitter and a timeout; 30s/5s in Envoy's docs, shorter
// here against a server whose min_ping_interval is shortened alike) gets
// every ping answered and is never sent GOAWAY. A client pinging faster
// than min_ping_interval is — which shows the check would see one.
func TestKeepalivePingsAccepted(t *testing.T) {
	b := startBridgeXDS(t, freePort(t), shortKeepalive, map[string][]int{"web": {8080}})

	const (
		interval = 300 * time.Millisecond // min_ping_interval is 200ms
		timeout  = time.Second
		pings    = 15
	)
	envoy := dialH2(t, b.grpcAddr)
	envoy.openADS(b.grpcAddr, "envoy-pinger")
	select {
	case <-envoy.response:
	case <-time.After(10 * time.Second):
		t.Fatal("no CDS response on the raw HTTP/2 stream")
	}
	for i := range pings {
		jitter := time.Duration((rand.Float64()*0.3 - 0.15) * float64(interval))
		time.Sleep(interval + jitter)
		if !envoy.ping(timeout) {
			t.Fatalf("ping %d not answered within %v", i, timeout)
		}
		if g, ok := envoy.sawGoaway(); ok {
			t.Fatalf("GOAWAY after ping %d: %v %q", i, g.Code, g.Debug)
		}
	}
	// Stay idle past the server's keepalive time: its own PINGs are
	// answered and it keeps the connection.
	time.Sleep(2500 * time.Millisecond)
	if g, ok := envoy.sawGoaway(); ok {
		t.Fatalf("GOAWAY to a healthy client: %v %q", g.Code, g.Debug)
	}
	if envoy.serverPings.Load() == 0 {
		t.Error("the server never pinged the idle client")
	}
	if !b.hasNode("envoy-pinger") {
		t.Fatal("the pinging client is no longer connected")
	}

	abuser := dialH2(t, b.grpcAddr)
	for range 10 {
		if _, err := abuser.sendPing(); err != nil {
			break // closed after its GOAWAY
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case g := <-abuser.goaway:
		if g.Code != http2.ErrCodeEnhanceYourCalm || g.Debug != "too_many_pings" {
			t.Errorf("GOAWAY to the fast pinger = %v %q, want ENHANCE_YOUR_CALM too_many_pings", g.Code, g.Debug)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a client pinging every 10ms got no GOAWAY: the check cannot see one")
	}
	if g, ok := envoy.sawGoaway(); ok {
		t.Fatalf("GOAWAY to the healthy client: %v %q", g.Code, g.Debug)
	}
}

// On SIGTERM the bridge sends GOAWAY, ends the open stream, exits 0
// within the shutdown grace, and records the disconnect as server
// shutdown.
func TestShutdownGoaway(t *testing.T) {
	b := startBridgeXDS(t, freePort(t), shortKeepalive, map[string][]int{"web": {8080}})
	c := dialH2(t, b.grpcAddr)
	c.openADS(b.grpcAddr, "leaver")
	select {
	case <-c.response:
	case <-time.After(10 * time.Second):
		t.Fatal("no CDS response")
	}
	eventually(t, 5*time.Second, "the client registered", func() bool { return b.hasNode("leaver") })

	start := time.Now()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-c.goaway:
		t.Logf("GOAWAY %v after %v", g.Code, time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("no GOAWAY within 5s of SIGTERM")
	}
	select {
	case <-c.streamEnd:
	case <-time.After(6 * time.Second):
		t.Fatal("the stream did not end within the shutdown grace")
	}
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		t.Fatal("xdsbridge did not exit within 10s of SIGTERM")
	}
	if code := b.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	t.Logf("exited after %v", time.Since(start).Round(time.Millisecond))
	if log := b.log.String(); !strings.Contains(log, `reason="server shutdown"`) {
		t.Errorf("no disconnect recorded as server shutdown:\n%s", log)
	}
}

// /debug/clients shows a client's ACKs and NACKs, and /metrics has every
// metric the README lists, with the source and ACK/NACK attribution.
func TestClientsAndMetrics(t *testing.T) {
	b := startBridge(t, map[string]string{
		"plugins.yaml":  staticPlugins,
		"clusters.yaml": clustersFile(map[string][]int{"web": {8080}, "api": {9090}}),
	})
	s := newSotw(t, dial(t, b.grpcAddr), "observed")
	s.subscribe(resource.ClusterType)
	cds := s.recvType(resource.ClusterType, 10*time.Second)
	s.ack(cds)
	s.subscribe(resource.EndpointType, "web")
	eds := s.recvType(resource.EndpointType, 10*time.Second)
	s.nack(eds, "web")

	var snap conns.Snapshot
	eventually(t, 5*time.Second, "the NACK in /debug/clients", func() bool {
		b.getJSON("/debug/clients?node=observed", &snap)
		return len(snap.Connections) == 1 && len(snap.Connections[0].Streams) == 1 && len(snap.Connections[0].Streams[0].Types) == 2 &&
			snap.Connections[0].Streams[0].Types[1].NACKs == 1
	})
	types := snap.Connections[0].Streams[0].Types
	if a := types[0].LastACK; types[0].TypeURL != resource.ClusterType || a == nil || a.Version != cds.GetVersionInfo() || a.Nonce != cds.GetNonce() {
		t.Errorf("CDS = %+v, want the ACK of %s", types[0], cds.GetVersionInfo())
	}
	if n := types[1].LastNACK; n == nil || n.Version != eds.GetVersionInfo() || n.Detail != "e2e: rejected on purpose" {
		t.Errorf("EDS last NACK = %+v", n)
	}

	for _, m := range []struct {
		name   string
		labels []string
		want   float64 // -1: present, any value
	}{
		{"xdsbridge_xds_connections", nil, 1},
		{"xdsbridge_xds_streams", []string{`kind="sotw_ads"`}, 1},
		{"xdsbridge_xds_connected_clients", []string{`transport="grpc"`, `client="unknown"`}, 1},
		{"xdsbridge_xds_requests_total", []string{`kind="sotw_ads"`, `type="envoy.config.cluster.v3.Cluster"`}, 2},
		{"xdsbridge_xds_responses_total", []string{`kind="sotw_ads"`, `type="envoy.config.endpoint.v3.ClusterLoadAssignment"`}, 1},
		{"xdsbridge_xds_response_bytes_total", []string{`type="envoy.config.cluster.v3.Cluster"`}, -1},
		{"xdsbridge_xds_acks_total", []string{`type="envoy.config.cluster.v3.Cluster"`, `source="files"`}, 1},
		{"xdsbridge_xds_nacks_total", []string{`type="envoy.config.endpoint.v3.ClusterLoadAssignment"`, `source="files"`}, 1},
		{"xdsbridge_xds_push_latency_seconds_count", nil, -1},
		{"xdsbridge_xds_disconnects_total", []string{`reason="keepalive timeout"`}, 0},
		{"xdsbridge_xds_rate_limit_enforced_total", []string{`scope="connection"`}, 0},
		{"xdsbridge_xds_pending_requests", nil, 0},
		{"xdsbridge_source_connected_state", []string{`source="files"`}, 1},
		{"xdsbridge_plugin_up", []string{`source="files"`}, 1},
		{"xdsbridge_plugin_restarts_total", []string{`source="files"`}, 0},
		{"xdsbridge_source_clusters", []string{`source="files"`}, 2},
		{"xdsbridge_source_last_update_timestamp_seconds", []string{`source="files"`}, -1},
		{"go_goroutines", nil, -1},
	} {
		got, ok := b.metric(m.name, m.labels...)
		if !ok || (m.want >= 0 && got != m.want) {
			t.Errorf("%s%v = %v (present %v), want %v", m.name, m.labels, got, ok, m.want)
		}
	}
	// Profiles are off unless admin.pprof is set.
	resp, err := httpGet(b, "/debug/pprof/")
	if err != nil || resp != 404 {
		t.Errorf("GET /debug/pprof/: %d %v, want 404 by default", resp, err)
	}
}
