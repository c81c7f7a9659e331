package xds

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/goleak"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/internal/publish"
	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/xds/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type fixture struct {
	srv  *Server
	pub  *publish.Publisher
	logs *lockedBuffer
	ads  discovery.AggregatedDiscoveryServiceClient
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	st := store.New(logger)
	srv := New(Options{Logger: logger, GRPCAddress: "127.0.0.1:0", Store: st})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	actx, acancel := context.WithTimeout(ctx, 5*time.Second)
	defer acancel()
	gaddr, _, err := srv.Addrs(actx)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(gaddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return &fixture{srv: srv, pub: &publish.Publisher{Store: st, Logger: logger}, logs: logs, ads: discovery.NewAggregatedDiscoveryServiceClient(cc)}
}

func cluster(name string, ports ...uint32) *aggregator.Cluster {
	c := &aggregator.Cluster{Name: name, Sources: []string{"src-" + name}}
	for _, p := range ports {
		c.Endpoints = append(c.Endpoints, aggregator.Endpoint{Endpoint: sdk.Endpoint{Address: "10.0.0.1", Port: p}, Sources: c.Sources})
	}
	return c
}

func recvWithin(t *testing.T, st discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient, d time.Duration) (*discovery.DiscoveryResponse, bool) {
	t.Helper()
	ch := make(chan *discovery.DiscoveryResponse, 1)
	go func() {
		r, err := st.Recv()
		if err == nil {
			ch <- r
		}
		close(ch)
	}()
	select {
	case r, ok := <-ch:
		return r, ok
	case <-time.After(d):
		return nil, false
	}
}

// Nothing is answered before Open, even with resources in the store; a
// watch made while closed is answered once the gate opens.
func TestGateHoldsUntilOpen(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := f.ads.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "n"}, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	f.pub.Publish(ctx, &aggregator.Change{Clusters: []*aggregator.Cluster{cluster("a", 80)}})

	got := make(chan *discovery.DiscoveryResponse, 1)
	go func() {
		r, err := st.Recv()
		if err == nil {
			got <- r
		}
		close(got)
	}()
	select {
	case r := <-got:
		t.Fatalf("answered before Open: %v", r)
	case <-time.After(300 * time.Millisecond):
	}
	f.srv.Open()
	select {
	case r := <-got:
		if r == nil || len(r.GetResources()) != 1 {
			t.Fatalf("after Open: %v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no response after Open")
	}
	cancel()
}

// A NACK is logged with node, type, resource names and producing sources.
func TestNACKLogged(t *testing.T) {
	f := newFixture(t)
	f.srv.Open()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.pub.Publish(ctx, &aggregator.Change{Clusters: []*aggregator.Cluster{cluster("a", 80), cluster("b", 81)}})
	st, err := f.ads.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &core.Node{Id: "envoy-7"}
	if err := st.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.EndpointType, ResourceNames: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	r, ok := recvWithin(t, st, 5*time.Second)
	if !ok {
		t.Fatal("no EDS response")
	}
	if err := st.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.EndpointType, ResourceNames: []string{"a"},
		ResponseNonce: r.GetNonce(), ErrorDetail: &statuspb.Status{Message: "bad weight"}}); err != nil {
		t.Fatal(err)
	}
	if r2, ok := recvWithin(t, st, 500*time.Millisecond); ok {
		t.Fatalf("NACKed version re-sent: %v", r2.GetVersionInfo())
	}
	logs := f.logs.String()
	for _, want := range []string{"NACK", "node=envoy-7", "type=" + resource.EndpointType, "resources=[a]", "sources=[src-a]", `detail="bad weight"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("NACK log lacks %q:\n%s", want, logs)
		}
	}
	cancel()
}
