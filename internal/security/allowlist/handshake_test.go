package allowlist_test

// Real handshakes on 127.0.0.1: a go-control-plane xDS server over gRPC
// and REST, with certs' reloading credentials and the allow list in
// front, and clients with and without the right certificates.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/xdsbridge/xdsbridge/internal/security/allowlist"
	"github.com/xdsbridge/xdsbridge/internal/security/certs"
	"github.com/xdsbridge/xdsbridge/internal/security/limits"
	"github.com/xdsbridge/xdsbridge/internal/security/securitytest"
)

const (
	envoy1ID = "spiffe://example.org/envoy/envoy-1"
	envoy2ID = "spiffe://example.org/envoy/envoy-2"
	// wait bounds every wait of these tests.
	wait = 15 * time.Second
)

// xdsEnv is a running mTLS xDS server.
type xdsEnv struct {
	ca                 *securitytest.CA
	certFile, keyFile  string
	cache              cachev3.SnapshotCache
	list               *allowlist.List
	grpcAddr, restAddr string
	// handled counts streams that reached the interceptors, i.e. got
	// through the TLS handshake.
	handled  atomic.Int64
	mu       sync.Mutex
	rejected []allowlist.Rejection
}

func (e *xdsEnv) rejections() []allowlist.Rejection {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]allowlist.Rejection(nil), e.rejected...)
}

func snapshot(t *testing.T, version string, clusters ...string) *cachev3.Snapshot {
	t.Helper()
	var rs []types.Resource
	for _, c := range clusters {
		rs = append(rs, &clusterv3.Cluster{Name: c})
	}
	s, err := cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{resource.ClusterType: rs})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startXDS(t *testing.T) *xdsEnv {
	t.Helper()
	e := &xdsEnv{ca: securitytest.NewCA(t, "xdsbridge test CA")}
	dir := t.TempDir()
	e.certFile, e.keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	caFile := filepath.Join(dir, "ca.crt")
	c, k, _ := e.ca.Server(t)
	securitytest.WriteFile(t, e.certFile, c)
	securitytest.WriteFile(t, e.keyFile, k)
	securitytest.WriteFile(t, caFile, e.ca.PEM)

	logger := slog.New(slog.DiscardHandler)
	reloader, err := certs.New(certs.Options{Logger: logger, CertFile: e.certFile, KeyFile: e.keyFile,
		ClientCAFile: caFile, PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.list, err = allowlist.New([]allowlist.Rule{
		{Identity: envoy1ID, NodeIDs: []string{"envoy-1"}, NodeClusters: []string{"edge"}},
		{Identity: envoy2ID, NodeIDs: []string{"envoy-2"}},
	}, allowlist.Options{Logger: logger, OnReject: func(r allowlist.Rejection) {
		e.mu.Lock()
		e.rejected = append(e.rejected, r)
		e.mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	e.cache = cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	for _, id := range []string{"envoy-1", "envoy-2"} {
		if err := e.cache.SetSnapshot(ctx, id, snapshot(t, "1", "c1")); err != nil {
			t.Fatal(err)
		}
	}
	xs := serverv3.NewServer(ctx, e.cache, nil)
	count := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		e.handled.Add(1)
		return h(srv, ss)
	}
	lim := limits.Default()
	opts := append(lim.GRPCServerOptions(),
		grpc.Creds(reloader.ServerCredentials()),
		grpc.ChainStreamInterceptor(count, lim.StreamInterceptor(), e.list.StreamInterceptor()))
	gs := grpc.NewServer(opts...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, xs)

	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.grpcAddr, e.restAddr = gl.Addr().String(), hl.Addr().String()
	gw := &serverv3.HTTPGateway{Server: xs}
	hs := &http.Server{
		Handler: e.list.HTTPMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, code, err := gw.ServeHTTP(r)
			if err != nil {
				http.Error(w, err.Error(), code)
				return
			}
			w.WriteHeader(code)
			_, _ = w.Write(body)
		}), int64(lim.RequestBytes)),
		TLSConfig:         reloader.TLSConfig(),
		ReadHeaderTimeout: lim.RESTReadHeaderTimeout,
		ErrorLog:          log.New(io.Discard, "", 0), // refused handshakes
	}

	var wg sync.WaitGroup
	wg.Go(func() { _ = reloader.Run(ctx) })
	wg.Go(func() { _ = gs.Serve(gl) })
	wg.Go(func() { _ = hs.ServeTLS(hl, "", "") })
	t.Cleanup(func() {
		cancel()
		gs.Stop()
		_ = hs.Close()
		wg.Wait()
	})
	return e
}

// clientTLS trusts the server's CA and presents cert, if any.
func (e *xdsEnv) clientTLS(cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{RootCAs: e.ca.Pool(), ServerName: "localhost"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

func (e *xdsEnv) dial(t *testing.T, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+e.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(e.clientTLS(cert))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func sotwRequest(id, cluster string, names ...string) *discoveryv3.DiscoveryRequest {
	req := &discoveryv3.DiscoveryRequest{TypeUrl: resource.ClusterType, ResourceNames: names}
	if id != "" {
		req.Node = node(id, cluster)
	}
	return req
}

// ads opens an ADS stream and sends req on it.
func ads(t *testing.T, ctx context.Context, cc *grpc.ClientConn, req *discoveryv3.DiscoveryRequest, opts ...grpc.CallOption) (discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, error) {
	t.Helper()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx, opts...)
	if err != nil {
		return nil, err
	}
	if err := st.Send(req); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return st, nil
}

// firstResponse opens an ADS stream, sends req and returns the first
// response or the error the stream ended with.
func firstResponse(t *testing.T, cc *grpc.ClientConn, req *discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	st, err := ads(t, ctx, cc, req)
	if err != nil {
		return nil, err
	}
	return st.Recv()
}

func clusterNames(t *testing.T, resp *discoveryv3.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range resp.GetResources() {
		var c clusterv3.Cluster
		if err := a.UnmarshalTo(&c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c.GetName())
	}
	return out
}

func TestGRPC(t *testing.T) {
	e := startXDS(t)
	other := securitytest.NewCA(t, "another CA")
	envoy1 := e.ca.Client(t, envoy1ID)
	envoy2 := e.ca.Client(t, envoy2ID)
	envoy1OtherCA := other.Client(t, envoy1ID)

	tests := []struct {
		name string
		cert *tls.Certificate
		req  *discoveryv3.DiscoveryRequest
		// code is the stream's status; OK means a response came.
		code codes.Code
		// handshake is true when the client gets in at all.
		handshake bool
		says      string
		reason    allowlist.Reason
	}{
		// Refused in the handshake: the client sees the connection fail
		// (how exactly depends on timing: an alert, a reset, a broken
		// pipe), and no stream ever reaches the server.
		{name: "no certificate", req: sotwRequest("envoy-1", "edge"), code: codes.Unavailable},
		{name: "certificate from another CA", cert: &envoy1OtherCA, req: sotwRequest("envoy-1", "edge"), code: codes.Unavailable},
		{name: "envoy-2 claims envoy-1", cert: &envoy2, req: sotwRequest("envoy-1", "edge"), code: codes.PermissionDenied, handshake: true,
			says: `client spiffe://example.org/envoy/envoy-2 may not connect as node "envoy-1"`, reason: allowlist.NotAllowed},
		{name: "envoy-1 in another cluster", cert: &envoy1, req: sotwRequest("envoy-1", "billing"), code: codes.PermissionDenied, handshake: true,
			says: `in cluster "billing"`, reason: allowlist.NotAllowed},
		{name: "no node", cert: &envoy1, req: sotwRequest("", ""), code: codes.PermissionDenied, handshake: true,
			says: "sent no node", reason: allowlist.NoNode},
		{name: "too many names", cert: &envoy1, req: sotwRequest("envoy-1", "edge", make([]string, limits.Default().ResourceNames+1)...),
			code: codes.ResourceExhausted, handshake: true, says: "more than the 100000 allowed"},
		{name: "envoy-1 as itself", cert: &envoy1, req: sotwRequest("envoy-1", "edge"), code: codes.OK, handshake: true},
		{name: "envoy-2 as itself", cert: &envoy2, req: sotwRequest("envoy-2", "anything"), code: codes.OK, handshake: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			handled, rejected := e.handled.Load(), len(e.rejections())
			resp, err := firstResponse(t, e.dial(t, tt.cert), tt.req)
			if got := status.Code(err); got != tt.code {
				t.Fatalf("stream ended with %v, want %v", err, tt.code)
			}
			if tt.code == codes.OK {
				if got := clusterNames(t, resp); len(got) != 1 || got[0] != "c1" {
					t.Errorf("clusters %v, want [c1]", got)
				}
			}
			if !strings.Contains(status.Convert(err).Message(), tt.says) {
				t.Errorf("status message %q does not say %q", status.Convert(err).Message(), tt.says)
			}
			if got := e.handled.Load() > handled; got != tt.handshake {
				t.Errorf("a stream reached the server: %v, want %v", got, tt.handshake)
			}
			rs := e.rejections()[rejected:]
			switch {
			case tt.reason == "" && len(rs) != 0:
				t.Errorf("rejections %+v, want none", rs)
			case tt.reason != "" && (len(rs) != 1 || rs[0].Reason != tt.reason):
				t.Errorf("rejections %+v, want one for %s", rs, tt.reason)
			}
		})
	}
}

// TestGRPCNodeChange: a stream that was allowed may leave the node out
// of later requests, but not switch to a node it may not claim.
func TestGRPCNodeChange(t *testing.T) {
	e := startXDS(t)
	envoy1 := e.ca.Client(t, envoy1ID)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	st, err := ads(t, ctx, e.dial(t, &envoy1), sotwRequest("envoy-1", "edge"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	ack := &discoveryv3.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
	if err := st.Send(ack); err != nil {
		t.Fatal(err)
	}
	if err := e.cache.SetSnapshot(ctx, "envoy-1", snapshot(t, "2", "c1", "c2")); err != nil {
		t.Fatal(err)
	}
	resp, err = st.Recv()
	if err != nil {
		t.Fatalf("after an ACK without a node: %v", err)
	}
	if resp.GetVersionInfo() != "2" {
		t.Fatalf("version %q, want 2", resp.GetVersionInfo())
	}
	switched := sotwRequest("envoy-2", "edge")
	switched.VersionInfo, switched.ResponseNonce = resp.GetVersionInfo(), resp.GetNonce()
	if err := st.Send(switched); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("after switching to envoy-2: %v, want PermissionDenied", err)
	}
}

func TestDelta(t *testing.T) {
	e := startXDS(t)
	envoy1 := e.ca.Client(t, envoy1ID)
	envoy2 := e.ca.Client(t, envoy2ID)
	tests := []struct {
		name string
		cert *tls.Certificate
		code codes.Code
	}{
		{"envoy-2 claims envoy-1", &envoy2, codes.PermissionDenied},
		{"envoy-1 as itself", &envoy1, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(e.dial(t, tt.cert)).DeltaAggregatedResources(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node("envoy-1", "edge"), TypeUrl: resource.ClusterType}); err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			resp, err := st.Recv()
			if status.Code(err) != tt.code {
				t.Fatalf("stream ended with %v, want %v", err, tt.code)
			}
			if tt.code == codes.OK && len(resp.GetResources()) != 1 {
				t.Errorf("got %d resources, want 1", len(resp.GetResources()))
			}
		})
	}
}

func TestREST(t *testing.T) {
	e := startXDS(t)
	other := securitytest.NewCA(t, "another CA")
	envoy1 := e.ca.Client(t, envoy1ID)
	envoy2 := e.ca.Client(t, envoy2ID)
	envoy1OtherCA := other.Client(t, envoy1ID)
	tests := []struct {
		name string
		cert *tls.Certificate
		body string
		code int // 0: the handshake fails
		says string
	}{
		{name: "no certificate", body: `{"node":{"id":"envoy-1","cluster":"edge"}}`},
		{name: "certificate from another CA", cert: &envoy1OtherCA, body: `{"node":{"id":"envoy-1","cluster":"edge"}}`},
		{name: "envoy-2 claims envoy-1", cert: &envoy2, body: `{"node":{"id":"envoy-1","cluster":"edge"}}`, code: http.StatusForbidden,
			says: `client spiffe://example.org/envoy/envoy-2 may not connect as node "envoy-1"`},
		{name: "envoy-1 as itself", cert: &envoy1, body: `{"node":{"id":"envoy-1","cluster":"edge"}}`, code: http.StatusOK, says: `"version_info":"1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: e.clientTLS(tt.cert), ForceAttemptHTTP2: true}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: wait}
			resp, err := c.Post("https://"+e.restAddr+"/v3/discovery:clusters", "application/json", strings.NewReader(tt.body))
			if tt.code == 0 {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("got %s, want a failed handshake", resp.Status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.code || !strings.Contains(string(b), tt.says) {
				t.Fatalf("got %s %q, want %d saying %q", resp.Status, b, tt.code, tt.says)
			}
			if tt.code == http.StatusOK {
				var dr discoveryv3.DiscoveryResponse
				if err := protojson.Unmarshal(b, &dr); err != nil {
					t.Fatal(err)
				}
				if got := clusterNames(t, &dr); len(got) != 1 || got[0] != "c1" {
					t.Errorf("clusters %v, want [c1]", got)
				}
			}
		})
	}
}

// TestRotationKeepsStreams rotates the server certificate on disk: new
// connections get the new one, and a stream opened before keeps going.
func TestRotationKeepsStreams(t *testing.T) {
	e := startXDS(t)
	envoy1 := e.ca.Client(t, envoy1ID)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	// Every handshake of the client's connection, by the server
	// certificate's serial: a reconnect would add one.
	var mu sync.Mutex
	var handshakes []*big.Int
	cfg := e.clientTLS(&envoy1)
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		mu.Lock()
		defer mu.Unlock()
		handshakes = append(handshakes, cs.PeerCertificates[0].SerialNumber)
		return nil
	}
	seen := func() []*big.Int {
		mu.Lock()
		defer mu.Unlock()
		return append([]*big.Int(nil), handshakes...)
	}
	cc, err := grpc.NewClient("passthrough:///"+e.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	st, err := ads(t, ctx, cc, sotwRequest("envoy-1", "edge"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(seen()) != 1 {
		t.Fatalf("handshakes %v, want one", seen())
	}
	oldSerial := seen()[0]
	if err := st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}

	c, k, newSerial := e.ca.Server(t)
	securitytest.WriteFile(t, e.keyFile, k)
	securitytest.WriteFile(t, e.certFile, c)
	deadline := time.Now().Add(wait)
	for {
		conn, err := tls.Dial("tcp", e.grpcAddr, &tls.Config{RootCAs: e.ca.Pool(), ServerName: "localhost",
			Certificates: []tls.Certificate{envoy1}, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		got := conn.ConnectionState().PeerCertificates[0].SerialNumber
		conn.Close()
		if got.Cmp(newSerial) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new connections still get serial %x, want %x", got, newSerial)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := e.cache.SetSnapshot(ctx, "envoy-1", snapshot(t, "2", "c1", "c2")); err != nil {
		t.Fatal(err)
	}
	resp, err = st.Recv()
	if err != nil {
		t.Fatalf("the stream opened before the rotation: %v", err)
	}
	if got := clusterNames(t, resp); resp.GetVersionInfo() != "2" || len(got) != 2 {
		t.Errorf("after the rotation got version %q with %v, want 2 with [c1 c2]", resp.GetVersionInfo(), got)
	}
	if hs := seen(); len(hs) != 1 || hs[0].Cmp(oldSerial) != 0 {
		t.Errorf("the old stream's connection handshook again: serials %v", hs)
	}
	if oldSerial.Cmp(newSerial) == 0 {
		t.Fatal("the rotation did not change the serial")
	}
}

// TestRejectionsAsJSON makes sure a Rejection logs and encodes without
// surprises (it goes to metrics labels and logs).
func TestRejectionsAsJSON(t *testing.T) {
	b, err := json.Marshal(allowlist.Rejection{Reason: allowlist.NotAllowed, Identity: envoy2ID, NodeID: "envoy-1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`{"Reason":"not_allowed","Identity":%q,"NodeID":"envoy-1","NodeCluster":""}`, envoy2ID); string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
}
