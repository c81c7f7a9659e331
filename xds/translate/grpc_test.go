package translate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	// Registers the xds:/// resolver and gRPC's xDS balancers.
	_ "google.golang.org/grpc/xds"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/xds/translate"
)

// TestGRPCClientAccepts serves every golden load assignment and cluster,
// and examples/grpc/static.yaml, to grpc-go's own xDS client, configured by
// examples/grpc/bootstrap.json, and fails on any NACK.
//
// grpc-go's EDS validation (parseEDSRespProto in
// internal/xds/xdsclient/xdsresource) cannot be imported from outside grpc,
// so the test goes through the public API: a channel to an xds:/// target.
// checkAccepted in rules_test.go mirrors the same rules for quick, targeted
// failures.
//
// grpc-go reads its bootstrap from the environment when its packages
// initialise, so the client runs in a child process: this test binary
// again, running TestGRPCClientChild.
func TestGRPCClientAccepts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an xDS server and gRPC's xDS client")
	}

	// The resources: every golden cluster and load assignment, behind a
	// listener "goldens" whose route spreads over all of them, plus the
	// example's some_service.
	var (
		clusters     []proto.Message
		endpoints    []proto.Message
		goldenNames  []string
		exampleNames []string
	)
	files, err := filepath.Glob(filepath.Join("testdata", "out", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Clusters []goldenCluster }
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for i, cla := range goldenCLAs(t, f, out.Clusters) {
			g := out.Clusters[i]
			cl := new(clusterv3.Cluster)
			if g.Cluster != nil {
				if err := protojson.Unmarshal(g.Cluster, cl); err != nil {
					t.Fatalf("%s: %s: %v", f, g.Name, err)
				}
			} else if cl, err = translate.Cluster(&aggregator.Cluster{Name: g.Name}); err != nil {
				t.Fatal(err)
			}
			if slices.Contains(goldenNames, g.Name) {
				t.Fatalf("%s: cluster %s is in another golden file too", f, g.Name)
			}
			goldenNames = append(goldenNames, g.Name)
			clusters = append(clusters, cl)
			endpoints = append(endpoints, cla)
		}
	}
	exClusters, exResources := loadStatic(t, filepath.Join(examplesDir, "grpc", "static.yaml"))
	listeners := append([]proto.Message{apiListener("goldens", goldenNames)}, exResources...)
	grpcListeners, grpcRoutes, grpcTargets := goldenGRPCTargets(t)
	listeners = append(listeners, grpcListeners...)
	for _, c := range exClusters {
		cl, err := translate.Cluster(c)
		if err != nil {
			t.Fatal(err)
		}
		clusters = append(clusters, cl)
		endpoints = append(endpoints, translate.LoadAssignment(c))
		exampleNames = append(exampleNames, c.Name)
	}

	// The server, and what the client says about each response.
	acks := newAckLog()
	ads := newADSServer(acks)
	gs := grpc.NewServer()
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, ads)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)

	setResources := func(version string, endpoints []proto.Message) {
		t.Helper()
		if err := ads.set(version, map[string][]proto.Message{
			listenerType: listeners,
			routeType:    grpcRoutes,
			clusterType:  clusters,
			endpointType: endpoints,
		}); err != nil {
			t.Fatal(err)
		}
	}
	setResources("1", endpoints)

	// The client: the example bootstrap, aimed at this server.
	dial := []string{"xds:///goldens", "xds:///some_service"}
	for _, name := range grpcTargets {
		dial = append(dial, "xds:///"+name)
	}
	startGRPCClient(t, grpcBootstrapFor(t, lis.Addr().String()), dial...)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// Each target has an xDS client, and a stream, of its own.
	for _, typ := range []string{clusterType, endpointType} {
		for _, want := range [][]string{goldenNames, exampleNames} {
			if err := acks.wait(ctx, typ, "1", want); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, l := range []string{"goldens", "some_service"} {
		if err := acks.wait(ctx, listenerType, "1", []string{l}); err != nil {
			t.Fatal(err)
		}
	}
	// The generated gRPC listeners (testdata/grpc/out) and their routes.
	for _, name := range grpcTargets {
		for _, typ := range []string{listenerType, routeType} {
			if err := acks.wait(ctx, typ, "1", []string{name}); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The harness must see a rejection: serve one load assignment gRPC
	// refuses (an endpoint of weight 0) and expect a NACK.
	broken := proto.Clone(endpoints[0].(*endpointv3.ClusterLoadAssignment)).(*endpointv3.ClusterLoadAssignment)
	broken.Endpoints = []*endpointv3.LocalityLbEndpoints{{
		Locality:            &corev3.Locality{},
		LoadBalancingWeight: wrapperspb.UInt32(1),
		LbEndpoints: []*endpointv3.LbEndpoint{{
			HostIdentifier:      &endpointv3.LbEndpoint_Endpoint{Endpoint: endpoint("10.9.9.9", 80)},
			LoadBalancingWeight: wrapperspb.UInt32(0),
		}},
	}}
	setResources("2", append([]proto.Message{broken}, endpoints[1:]...))
	if err := acks.wait(ctx, endpointType, "2", goldenNames); err == nil {
		t.Fatal("gRPC accepted a load assignment with an endpoint of weight 0: the harness cannot see NACKs")
	} else {
		t.Logf("as expected: %v", err)
	}
}

// childEnv tells TestGRPCClientChild to run.
const childEnv = "TRANSLATE_TEST_GRPC_CLIENT"

// startGRPCClient starts TestGRPCClientChild in a child process, with
// bootstrap as its xDS bootstrap, dialling targets. The child runs until
// the test ends.
func startGRPCClient(t *testing.T, bootstrap string, targets ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestGRPCClientChild$", "-test.v")
	cmd.Env = append(os.Environ(),
		childEnv+"="+strings.Join(targets, ","),
		"GRPC_XDS_BOOTSTRAP_CONFIG="+bootstrap,
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close() // the child's signal to end
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil || t.Failed() {
				t.Logf("gRPC client (%v):\n%s", err, out.String())
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("gRPC client did not stop:\n%s", out.String())
		}
	})
}

// TestGRPCClientChild is TestGRPCClientAccepts' client, run in a child
// process: it dials the targets in $TRANSLATE_TEST_GRPC_CLIENT and keeps the
// channels open until its standard input closes.
func TestGRPCClientChild(t *testing.T) {
	targets := os.Getenv(childEnv)
	if targets == "" {
		t.Skip("run by TestGRPCClientAccepts")
	}
	for _, target := range strings.Split(targets, ",") {
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Connect()
	}
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		t.Fatal(err)
	}
}

// grpcBootstrapFor returns examples/grpc/bootstrap.json with its server_uri
// replaced by addr.
func grpcBootstrapFor(t *testing.T, addr string) string {
	t.Helper()
	data, _ := readGRPCBootstrap(t)
	var b map[string]any
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	b["xds_servers"].([]any)[0].(map[string]any)["server_uri"] = addr
	out, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// apiListener is a gRPC api_listener whose one route spreads calls over
// clusters, so that the client asks for all of them.
func apiListener(name string, clusters []string) *listenerv3.Listener {
	var wcs []*routev3.WeightedCluster_ClusterWeight
	for _, c := range clusters {
		wcs = append(wcs, &routev3.WeightedCluster_ClusterWeight{Name: c, Weight: wrapperspb.UInt32(1)})
	}
	router, _ := anypb.New(&routerv3.Router{})
	hcm, _ := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: name,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    name,
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: ""}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: wcs}},
					}},
				}},
			}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router},
		}},
	})
	return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: hcm}}
}

func endpoint(addr string, port uint32) *endpointv3.Endpoint {
	return &endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       addr,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}}
}

const (
	listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	routeType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	clusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	endpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// adsServer is the least ADS server that serves gRPC's client: state of
// the world, every resource of a type in each response, a new response when
// the resources change or the client asks for a different set of names.
// (go-control-plane's server would need a module this repository does not
// otherwise require.)
type adsServer struct {
	discoverygrpc.UnimplementedAggregatedDiscoveryServiceServer
	log *ackLog

	mu        sync.Mutex
	version   string
	resources map[string][]*anypb.Any
	changed   chan struct{} // closed and replaced by set
}

func newADSServer(log *ackLog) *adsServer {
	return &adsServer{log: log, changed: make(chan struct{})}
}

func (s *adsServer) set(version string, resources map[string][]proto.Message) error {
	packed := map[string][]*anypb.Any{}
	for typ, ms := range resources {
		for _, m := range ms {
			a, err := anypb.New(m)
			if err != nil {
				return err
			}
			packed[typ] = append(packed[typ], a)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version, s.resources = version, packed
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

func (s *adsServer) StreamAggregatedResources(stream discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	ctx := stream.Context()
	reqs := make(chan *discoverygrpc.DiscoveryRequest)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				close(reqs)
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()

	sent := map[string]string{}    // type URL → version last sent
	names := map[string][]string{} // type URL → names last asked for
	for {
		s.mu.Lock()
		version, resources, changed := s.version, s.resources, s.changed
		s.mu.Unlock()
		for typ := range names {
			if sent[typ] == version {
				continue
			}
			nonce := s.log.sent(names[typ])
			err := stream.Send(&discoverygrpc.DiscoveryResponse{
				VersionInfo: version,
				Resources:   resources[typ],
				TypeUrl:     typ,
				Nonce:       nonce,
			})
			if err != nil {
				return err
			}
			sent[typ] = version
		}
		select {
		case req, ok := <-reqs:
			if !ok {
				return nil
			}
			s.log.record(req)
			typ := req.GetTypeUrl()
			asked := slices.Sorted(slices.Values(req.GetResourceNames()))
			if prev, seen := names[typ]; !seen || req.GetResponseNonce() == "" || !slices.Equal(prev, asked) {
				sent[typ] = "" // (re)send
			}
			names[typ] = asked
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

// ackLog keeps the client's requests, which carry its ACKs and NACKs, and
// the names each response was for.
type ackLog struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every request
	reqs    []*discoverygrpc.DiscoveryRequest
	// responses[nonce] are the names the client had asked for when the
	// response was sent: an ACK of it shows those passed validation.
	responses map[string][]string
}

func newAckLog() *ackLog {
	return &ackLog{changed: make(chan struct{}), responses: map[string][]string{}}
}

// sent records a response for names and returns its nonce, unique across
// streams.
func (l *ackLog) sent(names []string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	nonce := strconv.Itoa(len(l.responses) + 1)
	l.responses[nonce] = names
	return nonce
}

func (l *ackLog) record(req *discoverygrpc.DiscoveryRequest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, proto.Clone(req).(*discoverygrpc.DiscoveryRequest))
	close(l.changed)
	l.changed = make(chan struct{})
}

// wait returns nil once the client has ACKed version of typ in a response
// sent while it asked for every one of names, and an error at the first
// NACK of typ or when ctx ends.
func (l *ackLog) wait(ctx context.Context, typ, version string, names []string) error {
	seen := 0
	for {
		l.mu.Lock()
		reqs, changed := l.reqs[seen:], l.changed
		seen = len(l.reqs)
		acked := func(req *discoverygrpc.DiscoveryRequest) bool {
			return req.GetVersionInfo() == version && subset(names, l.responses[req.GetResponseNonce()])
		}
		var nack error
		ok := false
		for _, req := range reqs {
			if req.GetTypeUrl() != typ {
				continue
			}
			if d := req.GetErrorDetail(); d != nil {
				nack = fmt.Errorf("gRPC NACKed %s: %s", typ, d.GetMessage())
				break
			}
			if acked(req) {
				ok = true
				break
			}
		}
		l.mu.Unlock()
		switch {
		case nack != nil:
			return nack
		case ok:
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("no ACK of %s version %s for %v: %w; requests:\n%s", typ, version, names, ctx.Err(), l.dump())
		}
	}
}

// dump describes the requests so far, for failures.
func (l *ackLog) dump() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, r := range l.reqs {
		fmt.Fprintf(&b, "  %s version=%q nonce=%q names=%v error=%v\n", r.GetTypeUrl(), r.GetVersionInfo(), r.GetResponseNonce(), r.GetResourceNames(), r.GetErrorDetail().GetMessage())
	}
	return b.String()
}

func subset(want, have []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// goldenGRPCTargets returns the generated listeners and routes of
// testdata/grpc/out, and the names of the targets that have both, once
// each.
func goldenGRPCTargets(t *testing.T) (listeners, routes []proto.Message, targets []string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "grpc", "out", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/grpc/out/*.json (%v)", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Targets []grpcGolden }
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range out.Targets {
			if g.Listener == nil || g.Route == nil || slices.Contains(targets, g.Target) {
				continue
			}
			l, r := new(listenerv3.Listener), new(routev3.RouteConfiguration)
			if err := protojson.Unmarshal(g.Listener, l); err != nil {
				t.Fatalf("%s: %s: %v", f, g.Target, err)
			}
			if err := protojson.Unmarshal(g.Route, r); err != nil {
				t.Fatalf("%s: %s: %v", f, g.Target, err)
			}
			listeners, routes, targets = append(listeners, l), append(routes, r), append(targets, g.Target)
		}
	}
	return listeners, routes, targets
}
