package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"gopkg.in/yaml.v3"

	"github.com/xdsbridge/xdsbridge/internal/security/allowlist"
	"github.com/xdsbridge/xdsbridge/internal/security/certs"
)

// grpc-go's xDS client keeps the file watcher of a "tls" channel_creds
// running after the client is closed (grpc v1.85.0); it is not ours.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("google.golang.org/grpc/credentials/tls/certprovider/pemfile.(*watcher).run"))
}

// The directory the example files name, relative to the repository root.
const certsDir = "examples/tls/certs"

var defaultClients = []string{"envoy/envoy-1", "envoy/envoy-2", "grpc/grpc-1"}

func generate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := run(options{out: dir, days: 30, trustDomain: "example.org", clients: defaultClients}, time.Now()); err != nil {
		t.Fatal(err)
	}
	return dir
}

func loadCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(b, mustRead(t, strings.TrimSuffix(file, ".crt")+".key"))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return c.Leaf
}

func mustRead(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGenerate(t *testing.T) {
	dir := generate(t)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(mustRead(t, filepath.Join(dir, "ca.crt"))) {
		t.Fatal("ca.crt holds no certificate")
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")); err != nil {
		t.Fatalf("ca.key does not go with ca.crt: %v", err)
	}

	server := loadCert(t, filepath.Join(dir, "server.crt"))
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := server.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("server.crt for %s: %v", name, err)
		}
	}
	if _, err := server.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("server.crt is also good as a client certificate")
	}

	tests := []struct{ file, uri string }{
		{"envoy-1.crt", "spiffe://example.org/envoy/envoy-1"},
		{"envoy-2.crt", "spiffe://example.org/envoy/envoy-2"},
		{"grpc-1.crt", "spiffe://example.org/grpc/grpc-1"},
	}
	for _, tt := range tests {
		c := loadCert(t, filepath.Join(dir, tt.file))
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: %v", tt.file, err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots}); err == nil {
			t.Errorf("%s is also good as a server certificate", tt.file)
		}
		if len(c.URIs) != 1 || c.URIs[0].String() != tt.uri {
			t.Errorf("%s: URIs %v, want [%s]", tt.file, c.URIs, tt.uri)
		}
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(e.Name(), "."):
			t.Errorf("temporary file %s left behind", e.Name())
		case strings.HasSuffix(e.Name(), ".key") && fi.Mode().Perm() != 0o600:
			t.Errorf("%s: mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
}

// TestServerOnly re-issues the server certificate under the same CA and
// leaves everything else alone, as a rotation would.
func TestServerOnly(t *testing.T) {
	dir := generate(t)
	before := loadCert(t, filepath.Join(dir, "server.crt"))
	client := mustRead(t, filepath.Join(dir, "envoy-1.crt"))
	written, err := run(options{out: dir, days: 1, serverOnly: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "server.key"), filepath.Join(dir, "server.crt")}
	if !slices.Equal(written, want) {
		t.Errorf("wrote %v, want %v", written, want)
	}
	after := loadCert(t, filepath.Join(dir, "server.crt"))
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Error("the server certificate did not change")
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(mustRead(t, filepath.Join(dir, "ca.crt")))
	if _, err := after.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: roots}); err != nil {
		t.Errorf("the new server certificate: %v", err)
	}
	if got := mustRead(t, filepath.Join(dir, "envoy-1.crt")); string(got) != string(client) {
		t.Error("envoy-1.crt changed")
	}
}

func TestRunRefuses(t *testing.T) {
	tests := []struct {
		name string
		o    options
		want string
	}{
		{"no days", options{days: 0}, "want at least 1"},
		{"server only without a CA", options{days: 1, serverOnly: true}, "run without -server-only first"},
		{"same file twice", options{days: 1, clients: []string{"a/x", "b/x"}}, "both be written to x.crt"},
		{"client named server", options{days: 1, clients: []string{"envoy/server"}}, "not ca or server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.out = t.TempDir()
			tt.o.trustDomain = "example.org"
			if _, err := run(tt.o, time.Now()); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("run = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

// yamlToJSON converts a YAML document to JSON, for protojson.
func yamlToJSON(t *testing.T, data []byte) []byte {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// validateAll runs the generated validation on m and on every message
// packed in an Any inside it, which ValidateAll does not look into.
func validateAll(m proto.Message) error {
	var errs []error
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		errs = append(errs, v.ValidateAll())
	}
	var walk func(protoreflect.Message)
	walk = func(m protoreflect.Message) {
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			var subs []protoreflect.Message
			switch {
			case fd.IsMap():
				if fd.MapValue().Message() != nil {
					v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
						subs = append(subs, mv.Message())
						return true
					})
				}
			case fd.Message() == nil:
			case fd.IsList():
				for i := range v.List().Len() {
					subs = append(subs, v.List().Get(i).Message())
				}
			default:
				subs = append(subs, v.Message())
			}
			for _, s := range subs {
				a, ok := s.Interface().(*anypb.Any)
				if !ok {
					walk(s)
					continue
				}
				inner, err := a.UnmarshalNew()
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", a.GetTypeUrl(), err))
					continue
				}
				if err := validateAll(inner); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", a.GetTypeUrl(), err))
				}
			}
			return true
		})
	}
	walk(m.ProtoReflect())
	return errors.Join(errs...)
}

func TestEnvoyBootstrap(t *testing.T) {
	b := new(bootstrapv3.Bootstrap)
	// protojson's default: unknown fields are errors.
	if err := protojson.Unmarshal(yamlToJSON(t, mustRead(t, "../envoy-mtls.yaml")), b); err != nil {
		t.Fatalf("envoy-mtls.yaml: %v", err)
	}
	if err := validateAll(b); err != nil {
		t.Fatalf("envoy-mtls.yaml: %v", err)
	}
	if b.GetNode().GetId() != "envoy-1" || b.GetNode().GetCluster() != "edge" {
		t.Errorf("node %v, want envoy-1 in edge (the identity of envoy-1.crt)", b.GetNode())
	}
	ads := b.GetDynamicResources().GetAdsConfig()
	if g := ads.GetGrpcServices(); ads.GetApiType() != corev3.ApiConfigSource_GRPC || len(g) != 1 || g[0].GetEnvoyGrpc().GetClusterName() != "xds_cluster" {
		t.Errorf("ads_config: want gRPC through xds_cluster")
	}
	var xc *clusterv3.Cluster
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == "xds_cluster" {
			xc = c
		}
	}
	if xc == nil {
		t.Fatal("no static cluster xds_cluster")
	}
	var hpo httpv3.HttpProtocolOptions
	if a := xc.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; a == nil ||
		a.UnmarshalTo(&hpo) != nil || hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Error("xds_cluster: no explicit HTTP/2")
	}
	sa := xc.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 5678 {
		t.Errorf("xds_cluster endpoint %s:%d, want 127.0.0.1:5678", sa.GetAddress(), sa.GetPortValue())
	}

	var up tlsv3.UpstreamTlsContext
	if err := xc.GetTransportSocket().GetTypedConfig().UnmarshalTo(&up); err != nil {
		t.Fatalf("xds_cluster transport socket: %v", err)
	}
	ctc := up.GetCommonTlsContext()
	if !slices.Equal(ctc.GetAlpnProtocols(), []string{"h2"}) {
		t.Errorf("alpn_protocols %v, want [h2]: gRPC servers refuse clients without it", ctc.GetAlpnProtocols())
	}
	if up.GetSni() != "localhost" {
		t.Errorf("sni %q, want localhost", up.GetSni())
	}
	certs := ctc.GetTlsCertificates()
	if len(certs) != 1 || certs[0].GetCertificateChain().GetFilename() != certsDir+"/envoy-1.crt" ||
		certs[0].GetPrivateKey().GetFilename() != certsDir+"/envoy-1.key" {
		t.Errorf("tls_certificates %v, want %s/envoy-1.crt and .key", certs, certsDir)
	}
	vc := ctc.GetValidationContext()
	if vc.GetTrustedCa().GetFilename() != certsDir+"/ca.crt" {
		t.Errorf("trusted_ca %q, want %s/ca.crt", vc.GetTrustedCa().GetFilename(), certsDir)
	}
	sans := vc.GetMatchTypedSubjectAltNames()
	if len(sans) != 1 || sans[0].GetSanType() != tlsv3.SubjectAltNameMatcher_DNS || sans[0].GetMatcher().GetExact() != "localhost" {
		t.Errorf("match_typed_subject_alt_names %v, want DNS localhost", sans)
	}

	// The files named are the ones gencerts writes by default, and they
	// are what the bootstrap expects of them.
	dir := generate(t)
	for _, f := range []string{certs[0].GetCertificateChain().GetFilename(), certs[0].GetPrivateKey().GetFilename(), vc.GetTrustedCa().GetFilename()} {
		if _, err := os.Stat(filepath.Join(dir, strings.TrimPrefix(f, certsDir+"/"))); err != nil {
			t.Errorf("%s: gencerts does not write it: %v", f, err)
		}
	}
	if got := loadCert(t, filepath.Join(dir, "envoy-1.crt")).URIs[0].String(); got != "spiffe://example.org/envoy/envoy-1" {
		t.Errorf("envoy-1.crt is %s", got)
	}
	if defaultOut := filepath.Join("examples", "tls", "certs"); filepath.ToSlash(defaultOut) != certsDir {
		t.Errorf("gencerts writes to %s by default, the bootstrap reads %s", defaultOut, certsDir)
	}
}

// TestGRPCBootstrap points grpc-go's own xDS client, configured by
// grpc-bootstrap.json with the certificates gencerts writes, at an mTLS
// xDS server with an allow list, and waits for its first request: it
// must arrive over a verified connection as spiffe://example.org/grpc/grpc-1
// claiming node grpc-1.
func TestGRPCBootstrap(t *testing.T) {
	dir := generate(t)
	reloader, err := certs.New(certs.Options{CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"),
		ClientCAFile: filepath.Join(dir, "ca.crt")})
	if err != nil {
		t.Fatal(err)
	}
	list, err := allowlist.New([]allowlist.Rule{{Identity: "spiffe://example.org/grpc/grpc-1", NodeIDs: []string{"grpc-1"}}}, allowlist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	type seen struct{ identity, node string }
	requests := make(chan seen, 100)
	record := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return h(srv, &recordingStream{ServerStream: ss, fn: func(node *corev3.Node) {
			id, _ := allowlist.PeerIdentity(ss.Context())
			select {
			case requests <- seen{id.String(), node.GetId()}:
			default:
			}
		}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	gs := grpc.NewServer(grpc.Creds(reloader.ServerCredentials()), grpc.ChainStreamInterceptor(list.StreamInterceptor(), record))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(ctx, cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil), nil))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = gs.Serve(l) })
	defer func() {
		cancel()
		gs.Stop()
		wg.Wait()
	}()

	// The example, pointed at this server and these files.
	bootstrap := string(mustRead(t, "../grpc-bootstrap.json"))
	var check struct {
		XDSServers []struct {
			ServerURI    string `json:"server_uri"`
			ChannelCreds []struct {
				Type   string            `json:"type"`
				Config map[string]string `json:"config"`
			} `json:"channel_creds"`
			ServerFeatures []string `json:"server_features"`
		} `json:"xds_servers"`
		Node map[string]any `json:"node"`
	}
	dec := json.NewDecoder(strings.NewReader(bootstrap))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&check); err != nil {
		t.Fatalf("grpc-bootstrap.json: %v", err)
	}
	if len(check.XDSServers) != 1 || check.XDSServers[0].ServerURI != "localhost:5678" {
		t.Fatalf("grpc-bootstrap.json: want one xDS server, localhost:5678 (the server certificate's name)")
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	bootstrap = strings.ReplaceAll(bootstrap, `"localhost:5678"`, fmt.Sprintf("%q", "localhost:"+port))
	bootstrap = strings.ReplaceAll(bootstrap, certsDir+"/", filepath.ToSlash(dir)+"/")

	res, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///some_service", grpc.WithResolvers(res), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cc.Connect()
	select {
	case got := <-requests:
		if want := (seen{"spiffe://example.org/grpc/grpc-1", "grpc-1"}); got != want {
			t.Errorf("first request from %+v, want %+v", got, want)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no xDS request within 15s; allow list rejections: %v", list.Rejected())
	}
}

// recordingStream calls fn with the node of every request received.
type recordingStream struct {
	grpc.ServerStream
	fn func(*corev3.Node)
}

func (s *recordingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if r, ok := m.(interface{ GetNode() *corev3.Node }); ok && err == nil && r.GetNode() != nil {
		s.fn(r.GetNode())
	}
	return err
}
