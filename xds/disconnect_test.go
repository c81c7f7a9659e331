package xds

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/xdsbridge/xdsbridge/xds/conns"
)

// shortKeepalive is what the tests use: a vanished client is evicted
// within two seconds.
var shortKeepalive = Keepalive{Time: time.Second, Timeout: time.Second, MinPingInterval: 100 * time.Millisecond, PermitWithoutStream: true}

// silentClient opens a TCP connection, sends the HTTP/2 preface and an
// empty SETTINGS frame, and then neither reads nor writes: to the server it
// is a client that vanished after connecting (its kernel still acknowledges
// TCP segments, as a stopped process's does). It opens no stream.
func silentClient(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	preface := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
	if _, err := io.WriteString(c, preface); err != nil {
		t.Fatal(err)
	}
	return c
}

func lastDisconnect(snap conns.Snapshot) (conns.Disconnect, bool) {
	if len(snap.RecentDisconnects) == 0 {
		return conns.Disconnect{}, false
	}
	return snap.RecentDisconnects[0], true
}

// A connection is tracked from the moment gRPC serves it, with or without
// a stream, and leaves the registry with the reason it ended: keepalive
// timeout for a client that stopped answering (within Time+Timeout), client
// close for one that closed.
func TestDisconnectReasons(t *testing.T) {
	e := startEnv(t, Options{Keepalive: shortKeepalive})
	e.publish(cluster("a", 80))

	t.Run("keepalive timeout", func(t *testing.T) {
		c := silentClient(t, e.grpcAddr)
		local := c.LocalAddr().String()
		eventually(t, 2*time.Second, "the silent connection in the registry", func() bool {
			return len(e.clients.Snapshot("").Connections) == 1
		})
		start := time.Now()
		eventually(t, shortKeepalive.Bound()+time.Second, "the silent client evicted", func() bool {
			return len(e.clients.Snapshot("").Connections) == 0
		})
		took := time.Since(start)
		d, _ := lastDisconnect(e.clients.Snapshot(""))
		if d.Reason != conns.ReasonKeepalive || d.Peer != local {
			t.Errorf("last disconnect = %+v, want keepalive timeout of %s", d, local)
		}
		t.Logf("silent client evicted %v after it was registered (bound %v), detail %q", took.Round(time.Millisecond), shortKeepalive.Bound(), d.Detail)
		if got := e.value(e.srv.metrics.disconnects.WithLabelValues(string(conns.ReasonKeepalive))); got != 1 {
			t.Errorf("keepalive disconnects = %v, want 1", got)
		}
	})

	t.Run("client close", func(t *testing.T) {
		cc := e.dial()
		st := e.ads(cc)
		if err := st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "closer"}, TypeUrl: resource.ClusterType}); err != nil {
			t.Fatal(err)
		}
		recvSotw(t, st, 5*time.Second)
		cc.Close()
		eventually(t, 5*time.Second, "the closed client gone", func() bool {
			d, ok := lastDisconnect(e.clients.Snapshot(""))
			return ok && len(d.Nodes) == 1 && d.Nodes[0].ID == "closer"
		})
		d, _ := lastDisconnect(e.clients.Snapshot(""))
		if d.Reason != conns.ReasonClientClose {
			t.Errorf("reason = %q (%s), want client close", d.Reason, d.Detail)
		}
		if s := e.clients.Stats(); s.Connections != 0 || s.Streams[conns.SotWADS] != 0 {
			t.Errorf("stats after close = %+v", s)
		}
	})
}

// At shutdown the server stops accepting, ends every stream (the client
// sees its stream end, not hang), returns from Run within the grace period,
// and records the disconnects as server shutdown.
func TestShutdown(t *testing.T) {
	e := startEnv(t, Options{Keepalive: shortKeepalive})
	e.publish(cluster("a", 80))
	st := e.ads(e.dial())
	if err := st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "stayer"}, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	recvSotw(t, st, 5*time.Second)
	ended := make(chan error, 1)
	go func() {
		_, err := st.Recv()
		ended <- err
	}()

	start := time.Now()
	if err := e.stop(shutdownGrace + 2*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("Run returned %v after cancel", time.Since(start).Round(time.Millisecond))
	select {
	case err := <-ended:
		if err != nil && !errors.Is(err, io.EOF) && status.Code(err) != codes.Unavailable {
			t.Errorf("stream ended with %v, want EOF or Unavailable", err)
		}
	case <-time.After(time.Second):
		t.Fatal("the client's stream did not end at shutdown")
	}
	if _, err := net.DialTimeout("tcp", e.grpcAddr, time.Second); err == nil {
		t.Error("the gRPC listener still accepts after shutdown")
	}
	d, ok := lastDisconnect(e.clients.Snapshot(""))
	if !ok || d.Reason != conns.ReasonShutdown || len(d.Nodes) != 1 || d.Nodes[0].ID != "stayer" {
		t.Errorf("last disconnect = %+v, want server shutdown of stayer", d)
	}
	if s := e.clients.Stats(); s.Connections != 0 {
		t.Errorf("%d connections left after shutdown", s.Connections)
	}
}
