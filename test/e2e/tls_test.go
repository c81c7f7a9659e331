package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/xdsbridge/xdsbridge/internal/security/securitytest"
)

// TestMutualTLS serves xDS over mutual TLS with an allow list, through the
// real binary: a client may claim only the node its certificate allows.
func TestMutualTLS(t *testing.T) {
	ca := securitytest.NewCA(t, "e2e-ca")
	serverCert, serverKey, _ := ca.Server(t)
	b := &bridge{t: t, dir: t.TempDir(), grpcAddr: freePort(t), restAddr: freePort(t), adminAddr: freePort(t), log: &syncBuffer{}, done: make(chan struct{})}
	b.write("tls/ca.crt", string(ca.PEM))
	b.write("tls/server.crt", string(serverCert))
	b.write("tls/server.key", string(serverKey))
	b.write("clusters.yaml", clustersFile(map[string][]int{"a": {1001}}))
	b.write("plugins.yaml", fmt.Sprintf(`xds:
  grpc_address: %s
  rest_address: %s
  tls:
    cert_file: tls/server.crt
    key_file: tls/server.key
    client_ca_file: tls/ca.crt
    allow:
      - identity: spiffe://example.org/envoy/envoy-1
        node_ids: [envoy-1]
      - identity: spiffe://example.org/envoy/envoy-2
        node_ids: [envoy-2]
admin:
  address: %s
%s`, b.grpcAddr, b.restAddr, b.adminAddr, staticPlugins))
	b.start()

	envoy1 := ca.Client(t, "spiffe://example.org/envoy/envoy-1")
	envoy2 := ca.Client(t, "spiffe://example.org/envoy/envoy-2")
	clientTLS := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", Certificates: certs, MinVersion: tls.VersionTLS12}
	}
	dialTLS := func(cfg *tls.Config) *grpc.ClientConn {
		t.Helper()
		cc, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	// fetch opens an ADS stream as node and returns the first CDS
	// response, or the error that ended the stream.
	fetch := func(cc *grpc.ClientConn, node string) (*discovery.DiscoveryResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
		if err != nil {
			return nil, err
		}
		if err := st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: node, Cluster: "e2e"}, TypeUrl: resource.ClusterType}); err != nil {
			if _, rerr := st.Recv(); rerr != nil {
				return nil, rerr
			}
			return nil, err
		}
		return st.Recv()
	}

	t.Run("valid certificate gets CDS", func(t *testing.T) {
		r, err := fetch(dialTLS(clientTLS(envoy1)), "envoy-1")
		if err != nil {
			t.Fatalf("CDS as envoy-1 with envoy-1's certificate: %v", err)
		}
		if len(r.GetResources()) != 1 {
			t.Errorf("CDS: %d clusters, want 1", len(r.GetResources()))
		}
	})
	t.Run("no certificate is refused", func(t *testing.T) {
		_, err := fetch(dialTLS(clientTLS()), "envoy-1")
		if err == nil {
			t.Fatal("CDS without a client certificate succeeded")
		}
		if c := status.Code(err); c != codes.Unavailable {
			t.Errorf("CDS without a client certificate: %v, want Unavailable (handshake refused)", err)
		}
	})
	t.Run("another node's identity is denied", func(t *testing.T) {
		_, err := fetch(dialTLS(clientTLS(envoy2)), "envoy-1")
		if c := status.Code(err); c != codes.PermissionDenied {
			t.Fatalf("CDS as envoy-1 with envoy-2's certificate: %v, want PermissionDenied", err)
		}
	})
	t.Run("REST over HTTPS", func(t *testing.T) {
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS(envoy1)}}
		defer hc.CloseIdleConnections()
		post := func(node string) (int, string) {
			t.Helper()
			body, _ := protojson.Marshal(&discovery.DiscoveryRequest{Node: &core.Node{Id: node, Cluster: "e2e"}})
			resp, err := hc.Post("https://"+b.restAddr+"/v3/discovery:clusters", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(data)
		}
		if code, body := post("envoy-1"); code != http.StatusOK {
			t.Errorf("REST CDS as envoy-1: %d %s, want 200", code, body)
		}
		if code, body := post("envoy-2"); code != http.StatusForbidden {
			t.Errorf("REST CDS as envoy-2 with envoy-1's certificate: %d %s, want 403", code, body)
		}
	})
}
