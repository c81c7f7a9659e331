package limits_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/xdsbridge/xdsbridge/internal/security/limits"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNameCount(t *testing.T) {
	tests := []struct {
		name string
		msg  any
		want int
	}{
		{"sotw", &discoveryv3.DiscoveryRequest{ResourceNames: []string{"a", "b"}}, 2},
		{"delta", &discoveryv3.DeltaDiscoveryRequest{ResourceNamesSubscribe: []string{"a"}, ResourceNamesUnsubscribe: []string{"b", "c"}}, 3},
		{"wildcard", &discoveryv3.DiscoveryRequest{}, 0},
		{"other", &corev3.Node{}, 0},
	}
	for _, tt := range tests {
		if got := limits.NameCount(tt.msg); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
}

// startServer runs a go-control-plane ADS server on 127.0.0.1 with the
// limits, allowing maxNames names per request.
func startServer(t *testing.T, maxNames int) *grpc.ClientConn {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	lim := limits.Default()
	lim.ResourceNames = maxNames
	gs := grpc.NewServer(append(lim.GRPCServerOptions(), grpc.ChainStreamInterceptor(lim.StreamInterceptor()))...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(ctx, cache, nil))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = gs.Serve(l) })
	cc, err := grpc.NewClient("passthrough:///"+l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		cancel()
		gs.Stop()
		wg.Wait()
	})
	return cc
}

func TestStreamInterceptor(t *testing.T) {
	cc := startServer(t, 3)
	node := &corev3.Node{Id: "envoy-1"}
	tests := []struct {
		name string
		req  any
		// code is how the stream ends; DeadlineExceeded means it stayed
		// open (no resources exist, so no response comes).
		code codes.Code
		says string
	}{
		{"sotw at the limit", &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType, ResourceNames: []string{"a", "b", "c"}}, codes.DeadlineExceeded, ""},
		{"sotw over the limit", &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType, ResourceNames: []string{"a", "b", "c", "d"}}, codes.ResourceExhausted, "names 4 resources, more than the 3 allowed"},
		{"delta over the limit", &discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ClusterType, ResourceNamesSubscribe: []string{"a", "b"}, ResourceNamesUnsubscribe: []string{"c", "d"}}, codes.ResourceExhausted, "names 4 resources"},
		{"message over the size limit", &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType, ResourceNames: []string{strings.Repeat("x", limits.Default().RequestBytes)}}, codes.ResourceExhausted, "larger than max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			client := discoveryv3.NewAggregatedDiscoveryServiceClient(cc)
			var err error
			switch req := tt.req.(type) {
			case *discoveryv3.DiscoveryRequest:
				var st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
				if st, err = client.StreamAggregatedResources(ctx); err == nil {
					if err = st.Send(req); err == nil || errors.Is(err, io.EOF) {
						_, err = st.Recv()
					}
				}
			case *discoveryv3.DeltaDiscoveryRequest:
				var st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
				if st, err = client.DeltaAggregatedResources(ctx); err == nil {
					if err = st.Send(req); err == nil || errors.Is(err, io.EOF) {
						_, err = st.Recv()
					}
				}
			}
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.says) {
				t.Fatalf("stream ended with %v, want %v saying %q", err, tt.code, tt.says)
			}
		})
	}
}
