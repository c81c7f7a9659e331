package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/xds"
)

// backend is a gRPC test server that answers UnaryCall with its name.
type backend struct {
	testgrpc.UnimplementedTestServiceServer
	name string
	port int
}

func (b *backend) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Hostname: b.name}, nil
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, port: l.Addr().(*net.TCPAddr).Port}
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, b)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return b
}

// grpcStatic is a static file for a proxyless gRPC client: an API listener
// named grpc-svc routing to cluster backend, whose endpoints are ports.
func grpcStatic(ports ...int) string {
	var eps strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&eps, "      - {address: 127.0.0.1, port: %d, locality: {region: r1, zone: z1}}\n", p)
	}
	return "clusters:\n  - name: backend\n    endpoints:\n" + eps.String() + "resources:\n" + apiListenerYAML("grpc-svc", "backend")
}

// apiListenerYAML is a static file's resources entry for an API listener
// named name with an inline route sending every call to cluster.
func apiListenerYAML(name, cluster string) string {
	return fmt.Sprintf(`  - "@type": type.googleapis.com/envoy.config.listener.v3.Listener
    name: %s
    api_listener:
      api_listener:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: grpc
        route_config:
          name: grpc-route
          virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
                - match: {prefix: ""}
                  route: {cluster: %s}
        http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`, name, cluster)
}

// TestGRPCXDSClient: grpc-go's own xDS client resolves xds:///grpc-svc
// through xdsbridge (LDS → inline route → CDS → EDS), calls the backend,
// and follows endpoint changes made by editing the static file.
func TestGRPCXDSClient(t *testing.T) {
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	br := startBridge(t, map[string]string{
		"plugins.yaml":  staticPlugins,
		"clusters.yaml": grpcStatic(b1.port),
	})
	bootstrap := fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {"id": "grpc-client-1", "cluster": "e2e", "locality": {"region": "r1", "zone": "z1"}}
}`, br.grpcAddr)
	res, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///grpc-svc", grpc.WithResolvers(res), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := testgrpc.NewTestServiceClient(cc)

	call := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		if err != nil {
			t.Logf("call: %v", err)
			return ""
		}
		return r.GetHostname()
	}
	eventually(t, 30*time.Second, "the first call to reach b1", func() bool { return call() == "b1" })

	br.write("clusters.yaml", grpcStatic(b2.port))
	eventually(t, 20*time.Second, "calls to move to b2", func() bool { return call() == "b2" })
	for range 5 {
		if got := call(); got != "b2" {
			t.Fatalf("after the move, a call reached %q", got)
		}
	}
}
