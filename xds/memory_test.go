package xds

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/xdsbridge/xdsbridge/xds/conns"
)

// heapAfterGC returns the live heap.
func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Nothing about a node stays in memory after it disconnects, beyond the
// bounded disconnect history: after 1,000 clients each connected, opened an
// ADS stream, subscribed to two types, ACKed and disconnected, the registry
// and the callbacks hold nothing, and the live heap has not grown.
func TestNodeMemoryReleased(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 connections")
	}
	const history = 16
	e := startEnv(t, Options{
		Logger:  slog.New(slog.DiscardHandler), // a log would grow with every cycle
		Clients: conns.New(conns.Options{History: history, RESTIdle: time.Minute}),
	})
	e.publish(cluster("a", 80), cluster("b", 81))

	// Each cycle's client lives only within the cycle, so that the test
	// itself keeps nothing.
	cycle := func(i int) {
		cc, err := grpc.NewClient(e.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		node := &core.Node{Id: fmt.Sprintf("node-%d", i), Cluster: "memory", UserAgentName: "envoy"}
		if err := st.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil {
			t.Fatal(err)
		}
		r := recvSotw(t, st, 5*time.Second)
		if err := st.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.EndpointType, ResourceNames: []string{"a", "b"}}); err != nil {
			t.Fatal(err)
		}
		recvSotw(t, st, 5*time.Second)
	}
	empty := func() bool {
		e.srv.callbacks.mu.Lock()
		n := len(e.srv.callbacks.streams) + len(e.srv.callbacks.fetches)
		e.srv.callbacks.mu.Unlock()
		e.srv.lis.mu.Lock()
		n += len(e.srv.lis.pending)
		e.srv.lis.mu.Unlock()
		s := e.clients.Stats()
		return n == 0 && s.Connections == 0
	}

	for i := range 50 { // warm up pools and caches
		cycle(i)
	}
	eventually(t, 10*time.Second, "the warm-up clients gone", empty)
	before := heapAfterGC()

	const cycles = 1000
	for i := range cycles {
		cycle(1000 + i)
	}
	eventually(t, 10*time.Second, "every client gone", empty)
	after := heapAfterGC()

	snap := e.clients.Snapshot("")
	if len(snap.Connections)+len(snap.Nodes)+len(snap.REST) != 0 {
		t.Errorf("registry still holds %d connections, %d nodes, %d REST clients", len(snap.Connections), len(snap.Nodes), len(snap.REST))
	}
	if len(snap.RecentDisconnects) != history {
		t.Errorf("history holds %d disconnects, want its bound %d", len(snap.RecentDisconnects), history)
	}
	growth := int64(after) - int64(before)
	t.Logf("live heap before %d KiB, after %d cycles %d KiB (growth %d bytes, %d per cycle)",
		before>>10, cycles, after>>10, growth, growth/cycles)
	// A node's state (node, stream, two types, the responses kept for
	// attribution) is several KiB: keeping it would add megabytes.
	const bound = 512 << 10
	if growth > bound {
		t.Errorf("live heap grew by %d bytes over %d connect/disconnect cycles, bound %d", growth, cycles, bound)
	}
}
