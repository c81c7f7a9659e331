package store

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	client "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	xdsserver "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/google/go-cmp/cmp"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
)

// wait bounds every wait of the integration tests.
const wait = 10 * time.Second

// observed wraps the store to report each watch go-control-plane creates,
// with the number of responses sitting in its channel when CreateWatch
// returns: the server goroutine that called it cannot have taken any yet,
// so that number is exactly what the store answered at once.
type observed struct {
	*Store
	events chan watchEvent
}

type watchEvent struct {
	typeURL  string
	nack     bool
	answered int
}

func (o *observed) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	cancel, err := o.Store.CreateWatch(req, sub, ch)
	o.events <- watchEvent{typeURL: req.GetTypeUrl(), nack: req.GetErrorDetail() != nil, answered: len(ch)}
	return cancel, err
}

func (o *observed) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, ch chan cachev3.DeltaResponse) (func(), error) {
	cancel, err := o.Store.CreateDeltaWatch(req, sub, ch)
	o.events <- watchEvent{typeURL: req.GetTypeUrl(), nack: req.GetErrorDetail() != nil, answered: len(ch)}
	return cancel, err
}

// next returns the next watch event of typeURL, skipping others.
func (o *observed) next(t *testing.T, typeURL string) watchEvent {
	t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case ev := <-o.events:
			if ev.typeURL == typeURL {
				return ev
			}
		case <-timer.C:
			t.Fatalf("no %s watch within %v", typeURL, wait)
		}
	}
}

type testServer struct {
	store *observed
	conn  *grpc.ClientConn
	http  *httptest.Server
	// ctx bounds every client stream of the test.
	ctx context.Context
}

// startServer serves a store with go-control-plane's servers: gRPC (ordered
// ADS, delta, per-type SotW) on 127.0.0.1 and the REST gateway over HTTP.
func startServer(t *testing.T) *testServer {
	t.Helper()
	s := &observed{Store: New(nil), events: make(chan watchEvent, 256)}
	srvCtx, stopSrv := context.WithCancel(context.Background())
	srv := xdsserver.NewServer(srvCtx, s, xdsserver.CallbackFuncs{}, serverv3.WithOrderedADS())

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(gs, srv)
	endpointservice.RegisterEndpointDiscoveryServiceServer(gs, srv)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := gs.Serve(lis); err != nil {
			t.Errorf("grpc serve: %v", err)
		}
	}()

	gw := &xdsserver.HTTPGateway{Server: srv}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, code, err := gw.ServeHTTP(r)
		if err != nil {
			http.Error(w, err.Error(), code)
			return
		}
		w.WriteHeader(code)
		_, _ = w.Write(b)
	}))

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait)
	t.Cleanup(func() {
		cancel()
		_ = conn.Close()
		hs.Close()
		gs.Stop()
		stopSrv()
		wg.Wait()
	})
	return &testServer{store: s, conn: conn, http: hs, ctx: ctx}
}

func TestServerSotwADS(t *testing.T) {
	ts := startServer(t)
	s := ts.store
	c := client.NewADSClient(ts.ctx, &corev3.Node{Id: "envoy-1"}, cdsType)
	if err := c.InitConnect(ts.conn); err != nil {
		t.Fatal(err)
	}
	fetch := func(want ...res) {
		t.Helper()
		r, err := c.Fetch()
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		if diff := cmp.Diff(msgs(want...), unpack(t, r.Resources), protocmp.Transform(), cmpEmpty); diff != "" {
			t.Fatalf("clusters (-want +got):\n%s", diff)
		}
	}

	// Full-state type, first request, empty store: an empty response.
	fetch()
	if err := c.Ack(); err != nil {
		t.Fatal(err)
	}
	mustApply(t, s.Store, items(res{cdsType, "c1", 1}, res{cdsType, "c2", 1}), nil)
	fetch(res{cdsType, "c1", 1}, res{cdsType, "c2", 1})
	if err := c.Ack(); err != nil {
		t.Fatal(err)
	}
	mustApply(t, s.Store, items(res{cdsType, "c2", 2}), nil)
	fetch(res{cdsType, "c1", 1}, res{cdsType, "c2", 2})

	// The NACK is answered by nothing, not by the rejected version again.
	if err := c.Nack("bad cluster c2"); err != nil {
		t.Fatal(err)
	}
	for {
		ev := s.next(t, cdsType)
		if !ev.nack {
			continue
		}
		if ev.answered != 0 {
			t.Fatalf("NACK answered with %d responses", ev.answered)
		}
		break
	}
	mustApply(t, s.Store, items(res{cdsType, "c2", 3}), nil)
	fetch(res{cdsType, "c1", 1}, res{cdsType, "c2", 3})
	if err := c.Ack(); err != nil {
		t.Fatal(err)
	}
}

func TestServerSotwEDS(t *testing.T) {
	ts := startServer(t)
	mustApply(t, ts.store.Store, items(res{edsType, "a", 1}, res{edsType, "b", 1}), nil)
	st, err := endpointservice.NewEndpointDiscoveryServiceClient(ts.conn).StreamEndpoints(ts.ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"a", "b"}
	if err := st.Send(&discovery.DiscoveryRequest{Node: &corev3.Node{Id: "grpc-1"}, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	recv := func(want ...res) *discovery.DiscoveryResponse {
		t.Helper()
		out, err := st.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		if diff := cmp.Diff(msgs(want...), unpack(t, out.GetResources()), protocmp.Transform(), cmpEmpty); diff != "" {
			t.Fatalf("endpoints (-want +got):\n%s", diff)
		}
		if out.GetVersionInfo() != ts.store.TypeVersion(edsType) {
			t.Errorf("version %q, want %q", out.GetVersionInfo(), ts.store.TypeVersion(edsType))
		}
		return out
	}
	out := recv(res{edsType, "a", 1}, res{edsType, "b", 1})
	ackReq := func(out *discovery.DiscoveryResponse) {
		t.Helper()
		if err := st.Send(&discovery.DiscoveryRequest{ResourceNames: names, VersionInfo: out.GetVersionInfo(), ResponseNonce: out.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	ackReq(out)
	mustApply(t, ts.store.Store, items(res{edsType, "b", 2}, res{edsType, "other", 1}), nil)
	out = recv(res{edsType, "b", 2})
	ackReq(out)
	mustApply(t, ts.store.Store, items(res{edsType, "a", 2}), nil)
	recv(res{edsType, "a", 2})
}

func TestServerDeltaADS(t *testing.T) {
	ts := startServer(t)
	s := ts.store
	mustApply(t, s.Store, items(res{cdsType, "c1", 1}, res{cdsType, "c2", 1}, res{edsType, "c1", 1}, res{edsType, "c2", 1}), nil)
	st, err := discovery.NewAggregatedDiscoveryServiceClient(ts.conn).DeltaAggregatedResources(ts.ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(req *discovery.DeltaDiscoveryRequest) {
		t.Helper()
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(typeURL string, want []res, removed ...string) *discovery.DeltaDiscoveryResponse {
		t.Helper()
		out, err := st.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		if out.GetTypeUrl() != typeURL {
			t.Fatalf("response of %s, want %s", out.GetTypeUrl(), typeURL)
		}
		anys := make([]*anypb.Any, len(out.GetResources()))
		for i, r := range out.GetResources() {
			anys[i] = r.GetResource()
			if e := s.mustLookup(t, typeURL, r.GetName()); r.GetVersion() != e.Version {
				t.Errorf("%s version %q, want %q", r.GetName(), r.GetVersion(), e.Version)
			}
		}
		if diff := cmp.Diff(msgs(want...), unpack(t, anys), protocmp.Transform(), cmpEmpty); diff != "" {
			t.Fatalf("%s resources (-want +got):\n%s", typeURL, diff)
		}
		if diff := cmp.Diff(removed, out.GetRemovedResources(), cmpEmptyStrings); diff != "" {
			t.Fatalf("%s removed (-want +got):\n%s", typeURL, diff)
		}
		if out.GetSystemVersionInfo() != s.TypeVersion(typeURL) {
			t.Errorf("system version %q, want %q", out.GetSystemVersionInfo(), s.TypeVersion(typeURL))
		}
		return out
	}
	ack := func(typeURL string, out *discovery.DeltaDiscoveryResponse) {
		t.Helper()
		send(&discovery.DeltaDiscoveryRequest{TypeUrl: typeURL, ResponseNonce: out.GetNonce()})
		if ev := s.next(t, typeURL); ev.answered != 0 {
			t.Fatalf("%s ack answered with %d responses", typeURL, ev.answered)
		}
	}

	send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "envoy-1"}, TypeUrl: cdsType})
	out := recv(cdsType, []res{{cdsType, "c1", 1}, {cdsType, "c2", 1}})
	s.next(t, cdsType)
	ack(cdsType, out)

	send(&discovery.DeltaDiscoveryRequest{TypeUrl: edsType, ResourceNamesSubscribe: []string{"c1"}})
	out = recv(edsType, []res{{edsType, "c1", 1}})
	s.next(t, edsType)
	ack(edsType, out)

	// Update and removal in one step, with both watches live: CDS first.
	mustApply(t, s.Store, items(res{cdsType, "c3", 1}, res{edsType, "c1", 2}, res{edsType, "c3", 1}), refs(cdsType, "c2"))
	outCDS := recv(cdsType, []res{{cdsType, "c3", 1}}, "c2")
	outEDS := recv(edsType, []res{{edsType, "c1", 2}})
	ack(cdsType, outCDS)
	ack(edsType, outEDS)

	// NACK: nothing resent; the next version arrives.
	mustApply(t, s.Store, items(res{edsType, "c1", 3}), nil)
	out = recv(edsType, []res{{edsType, "c1", 3}})
	ack(edsType, out)
	mustApply(t, s.Store, items(res{edsType, "c1", 4}), nil)
	out = recv(edsType, []res{{edsType, "c1", 4}})
	send(&discovery.DeltaDiscoveryRequest{TypeUrl: edsType, ResponseNonce: out.GetNonce(), ErrorDetail: &rpcstatus.Status{Message: "bad c1"}})
	if ev := s.next(t, edsType); !ev.nack || ev.answered != 0 {
		t.Fatalf("nack event %+v, want a NACK answered by nothing", ev)
	}
	mustApply(t, s.Store, items(res{edsType, "c1", 5}), nil)
	recv(edsType, []res{{edsType, "c1", 5}})
}

func TestServerREST(t *testing.T) {
	ts := startServer(t)
	s := ts.store.Store
	mustApply(t, s, items(res{cdsType, "c1", 1}, res{cdsType, "c2", 1}, res{edsType, "a", 1}, res{edsType, "b", 1}), nil)
	hc := &http.Client{Timeout: wait}
	t.Cleanup(hc.CloseIdleConnections)
	post := func(path string, req *discovery.DiscoveryRequest) (int, *discovery.DiscoveryResponse) {
		t.Helper()
		body, err := protojson.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Post(ts.http.URL+path, "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, nil
		}
		out := &discovery.DiscoveryResponse{}
		if err := protojson.Unmarshal(b, out); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		return resp.StatusCode, out
	}
	check := func(out *discovery.DiscoveryResponse, want ...res) {
		t.Helper()
		if diff := cmp.Diff(msgs(want...), unpack(t, out.GetResources()), protocmp.Transform(), cmpEmpty); diff != "" {
			t.Errorf("resources (-want +got):\n%s", diff)
		}
	}

	node := &corev3.Node{Id: "rest-1"}
	code, out := post("/v3/discovery:clusters", &discovery.DiscoveryRequest{Node: node})
	if code != http.StatusOK {
		t.Fatalf("first fetch: %d, want 200", code)
	}
	check(out, res{cdsType, "c1", 1}, res{cdsType, "c2", 1})
	if out.GetVersionInfo() != s.TypeVersion(cdsType) {
		t.Errorf("version %q, want %q", out.GetVersionInfo(), s.TypeVersion(cdsType))
	}
	if code, _ := post("/v3/discovery:clusters", &discovery.DiscoveryRequest{Node: node, VersionInfo: out.GetVersionInfo()}); code != http.StatusNotModified {
		t.Errorf("fetch at current version: %d, want 304", code)
	}
	mustApply(t, s, items(res{cdsType, "c2", 2}), nil)
	code, out2 := post("/v3/discovery:clusters", &discovery.DiscoveryRequest{Node: node, VersionInfo: out.GetVersionInfo()})
	if code != http.StatusOK {
		t.Fatalf("fetch after a change: %d, want 200", code)
	}
	check(out2, res{cdsType, "c1", 1}, res{cdsType, "c2", 2})

	code, out = post("/v3/discovery:endpoints", &discovery.DiscoveryRequest{Node: node, ResourceNames: []string{"b"}})
	if code != http.StatusOK {
		t.Fatalf("named fetch: %d, want 200", code)
	}
	check(out, res{edsType, "b", 1})
	if code, _ := post("/v3/discovery:endpoints", &discovery.DiscoveryRequest{Node: node, ResourceNames: []string{"b"}, VersionInfo: out.GetVersionInfo()}); code != http.StatusNotModified {
		t.Errorf("named fetch at current version: %d, want 304", code)
	}
	// A change to a resource not asked for leaves the named version alone.
	mustApply(t, s, items(res{edsType, "a", 2}), nil)
	if code, _ := post("/v3/discovery:endpoints", &discovery.DiscoveryRequest{Node: node, ResourceNames: []string{"b"}, VersionInfo: out.GetVersionInfo()}); code != http.StatusNotModified {
		t.Errorf("named fetch after an unrelated change: %d, want 304", code)
	}
}

// TestConcurrentClients runs SotW clients against a store that changes under
// them; every client must end at the final state. Run with -race.
func TestConcurrentClients(t *testing.T) {
	const (
		clients   = 8
		revisions = 40
		clusters  = 10
	)
	state := func(rev int) []Item {
		var out []Item
		for i := range clusters {
			name := fmt.Sprintf("c%d", i)
			out = append(out, res{cdsType, name, rev}.item(), res{edsType, name, rev}.item())
		}
		return out
	}
	final := New(nil)
	mustApply(t, final, state(revisions), nil)
	wantCDS, wantEDS := final.TypeVersion(cdsType), final.TypeVersion(edsType)

	s := New(nil)
	mustApply(t, s, state(0), nil)
	var wg sync.WaitGroup
	errs := make(chan error, clients+1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for rev := 1; rev <= revisions; rev++ {
			if err := s.Apply(state(rev), nil); err != nil {
				errs <- err
				return
			}
		}
	}()
	deadline := time.Now().Add(wait)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- runClient(s, i, deadline, wantCDS, wantEDS)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// runClient plays an ADS stream with CDS wildcard and EDS on two names,
// acking every response, until both types reach the wanted versions.
func runClient(s *Store, id int, deadline time.Time, wantCDS, wantEDS string) error {
	ch := make(chan cachev3.Response, 2)
	names := []string{fmt.Sprintf("c%d", id%10), fmt.Sprintf("c%d", (id+1)%10)}
	subs := map[string]*sotwState{
		cdsType: {names: nil},
		edsType: {names: names},
	}
	for typeURL, st := range subs {
		st.sub = stream.NewSotwSubscription(st.names, true)
		if err := st.watch(s, typeURL, ch); err != nil {
			return err
		}
	}
	defer func() {
		for _, st := range subs {
			st.cancel()
		}
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	nonce := 0
	for subs[cdsType].version != wantCDS || subs[edsType].version != wantEDS {
		select {
		case r := <-ch:
			out, err := r.GetDiscoveryResponse()
			if err != nil {
				return err
			}
			st := subs[out.GetTypeUrl()]
			st.sub.SetReturnedResources(r.GetReturnedResources())
			st.version = out.GetVersionInfo()
			nonce++
			st.nonce = fmt.Sprint(nonce)
			if err := st.watch(s, out.GetTypeUrl(), ch); err != nil {
				return err
			}
		case <-timer.C:
			return fmt.Errorf("client %d: versions cds %q eds %q at deadline, want %q %q", id,
				subs[cdsType].version, subs[edsType].version, wantCDS, wantEDS)
		}
	}
	return nil
}

// sotwState is one type of a runClient stream.
type sotwState struct {
	names   []string
	sub     stream.Subscription
	version string
	nonce   string
	cancel  func()
}

// watch sends the type's next request: the first one, or an ACK.
func (st *sotwState) watch(s *Store, typeURL string, ch chan cachev3.Response) error {
	if st.cancel != nil {
		st.cancel()
		st.sub.SetResourceSubscription(st.names)
	}
	req := &discovery.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: st.names, VersionInfo: st.version, ResponseNonce: st.nonce}
	cancel, err := s.CreateWatch(req, st.sub, ch)
	if err != nil {
		return fmt.Errorf("watch %s: %w", typeURL, err)
	}
	st.cancel = cancel
	return nil
}
