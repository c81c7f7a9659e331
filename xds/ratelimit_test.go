package xds

import (
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"

	"github.com/xdsbridge/xdsbridge/xds/conns"
)

// connRequests returns how many requests the registry has seen on the
// connection of node, and how many of them were rate limited.
func connRequests(e *env, node string) (requests, limited uint64) {
	for _, c := range e.clients.Snapshot("").Connections {
		if c.Node != nil && c.Node.ID == node {
			return c.Requests, c.RateLimited
		}
	}
	return 0, 0
}

// Requests over a connection's limit are delayed, counted, and shown as
// pending while they wait; the stream stays open and every request goes
// through. Once the bucket has refilled, requests pass at once again. A
// flooding connection does not delay another one.
func TestRateLimitPerConnection(t *testing.T) {
	const rate, burst = 10, 2
	e := startEnv(t, Options{RateLimit: RateLimit{PerConnection: Bucket{Rate: rate, Burst: burst}}})
	e.publish(cluster("a", 80))
	enforced := e.srv.metrics.rateLimited.WithLabelValues("connection")

	flood := e.ads(e.dial())
	node := &core.Node{Id: "flooder"}
	const n = 22 // (n-burst)/rate = 2s of delay
	start := time.Now()
	for i := range n {
		// Each request changes the EDS subscription: a legitimate request
		// the server must process.
		names := []string{"a"}
		if i%2 == 1 {
			names = []string{"a", "b"}
		}
		if err := flood.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.EndpointType, ResourceNames: names}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, time.Second, "a request pending behind the limit", func() bool {
		return e.value(e.srv.metrics.pending) >= 1
	})

	// Meanwhile another connection is served at once.
	other := e.ads(e.dial())
	t0 := time.Now()
	if err := other.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "bystander"}, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	recvSotw(t, other, 5*time.Second)
	if d := time.Since(t0); d > 700*time.Millisecond {
		t.Errorf("a second connection waited %v behind the flooding one", d)
	}

	// (n-burst) requests wait 1/rate each, one after the other.
	minWait := time.Duration(n-burst) * time.Second / rate
	eventually(t, minWait+5*time.Second, "every flooded request processed", func() bool {
		got, _ := connRequests(e, "flooder")
		return got == n
	})
	took := time.Since(start)
	if took < minWait-50*time.Millisecond {
		t.Errorf("%d requests went through in %v; at %d/s with burst %d they take at least %v", n, took, rate, burst, minWait)
	}
	if got := e.value(enforced); got != n-burst {
		t.Errorf("rate_limit_enforced{scope=connection} = %v, want %d", got, n-burst)
	}
	if _, limited := connRequests(e, "flooder"); limited != n-burst {
		t.Errorf("registry counts %d rate limited requests, want %d", limited, n-burst)
	}
	eventually(t, time.Second, "no request pending", func() bool { return e.value(e.srv.metrics.pending) == 0 })
	if s := e.clients.Stats(); s.Streams[conns.SotWADS] != 2 {
		t.Errorf("streams = %v, want both open (delayed, not refused)", s.Streams)
	}

	// Recovery: after the bucket refills, a burst passes undelayed.
	time.Sleep(time.Duration(burst) * time.Second / rate)
	before := e.value(enforced)
	for range burst {
		if err := flood.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.EndpointType, ResourceNames: []string{"a"}}); err != nil {
			t.Fatal(err)
		}
	}
	t1 := time.Now()
	eventually(t, time.Second, "the burst after recovery processed", func() bool {
		got, _ := connRequests(e, "flooder")
		return got == n+burst
	})
	if got := e.value(enforced); got != before {
		t.Errorf("rate_limit_enforced rose from %v to %v after the bucket refilled", before, got)
	}
	if d := time.Since(t1); d > 500*time.Millisecond {
		t.Errorf("the burst after recovery took %v", d)
	}
}

// The total limit spans connections and REST: it delays requests, counted
// under scope total.
func TestRateLimitTotal(t *testing.T) {
	const rate = 5
	e := startEnv(t, Options{RateLimit: RateLimit{Total: Bucket{Rate: rate, Burst: 1}}})
	e.publish(cluster("a", 80))
	start := time.Now()
	for i := range 3 {
		if code, _ := e.rest("/v3/discovery:clusters", &discovery.DiscoveryRequest{Node: &core.Node{Id: "rest"}}); code != 200 {
			t.Fatalf("REST request %d: %d", i, code)
		}
	}
	st := e.ads(e.dial(grpc.WithUserAgent("total-test")))
	if err := st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "grpc"}, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	recvSotw(t, st, 5*time.Second)
	if took, min := time.Since(start), 3*time.Second/rate; took < min-50*time.Millisecond {
		t.Errorf("4 requests at %d/s with burst 1 took %v, want at least %v", rate, took, min)
	}
	if got := e.value(e.srv.metrics.rateLimited.WithLabelValues("total")); got != 3 {
		t.Errorf("rate_limit_enforced{scope=total} = %v, want 3", got)
	}
	if got := e.value(e.srv.metrics.rateLimited.WithLabelValues("connection")); got != 0 {
		t.Errorf("rate_limit_enforced{scope=connection} = %v, want 0", got)
	}
}
