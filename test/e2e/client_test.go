package e2e

import (
	"context"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// sotwStream is a raw state-of-the-world ADS stream, driven by hand.
type sotwStream struct {
	t      testing.TB
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *core.Node
	resps  chan *discovery.DiscoveryResponse
	errs   chan error
	// last response per type, for ACKs.
	last map[string]*discovery.DiscoveryResponse
}

func newSotw(t testing.TB, cc *grpc.ClientConn, nodeID string) *sotwStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := &sotwStream{t: t, stream: st, node: &core.Node{Id: nodeID, Cluster: "e2e"},
		resps: make(chan *discovery.DiscoveryResponse, 64), errs: make(chan error, 1), last: map[string]*discovery.DiscoveryResponse{}}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				s.errs <- err
				return
			}
			s.resps <- r
		}
	}()
	return s
}

// subscribe sends a request for names of typeURL that ACKs the last response
// of that type.
func (s *sotwStream) subscribe(typeURL string, names ...string) {
	s.t.Helper()
	last := s.last[typeURL]
	req := &discovery.DiscoveryRequest{Node: s.node, TypeUrl: typeURL, ResourceNames: names,
		VersionInfo: last.GetVersionInfo(), ResponseNonce: last.GetNonce()}
	if err := s.stream.Send(req); err != nil {
		s.t.Fatal(err)
	}
}

// ack acknowledges r, keeping the subscription to names.
func (s *sotwStream) ack(r *discovery.DiscoveryResponse, names ...string) {
	s.t.Helper()
	s.last[r.GetTypeUrl()] = r
	s.subscribe(r.GetTypeUrl(), names...)
}

// nack rejects r: the version stays the last accepted one.
func (s *sotwStream) nack(r *discovery.DiscoveryResponse, names ...string) {
	s.t.Helper()
	prev := s.last[r.GetTypeUrl()]
	req := &discovery.DiscoveryRequest{Node: s.node, TypeUrl: r.GetTypeUrl(), ResourceNames: names,
		VersionInfo: prev.GetVersionInfo(), ResponseNonce: r.GetNonce(),
		ErrorDetail: &statuspb.Status{Code: 3, Message: "e2e: rejected on purpose"}}
	if err := s.stream.Send(req); err != nil {
		s.t.Fatal(err)
	}
}

// recv waits for the next response.
func (s *sotwStream) recv(within time.Duration) *discovery.DiscoveryResponse {
	s.t.Helper()
	select {
	case r := <-s.resps:
		return r
	case err := <-s.errs:
		s.t.Fatalf("stream failed: %v", err)
	case <-time.After(within):
		s.t.Fatalf("no response within %v", within)
	}
	return nil
}

// recvType waits for the next response of typeURL, failing on any other.
func (s *sotwStream) recvType(typeURL string, within time.Duration) *discovery.DiscoveryResponse {
	s.t.Helper()
	r := s.recv(within)
	if r.GetTypeUrl() != typeURL {
		s.t.Fatalf("got a %s response, want %s", r.GetTypeUrl(), typeURL)
	}
	return r
}

// quiet asserts that nothing arrives for d.
func (s *sotwStream) quiet(d time.Duration) {
	s.t.Helper()
	select {
	case r := <-s.resps:
		s.t.Fatalf("unexpected %s response version %s with %d resources", r.GetTypeUrl(), r.GetVersionInfo(), len(r.GetResources()))
	case err := <-s.errs:
		s.t.Fatalf("stream failed: %v", err)
	case <-time.After(d):
	}
}

// deltaStream is a raw delta ADS stream.
type deltaStream struct {
	t      testing.TB
	stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	node   *core.Node
	resps  chan *discovery.DeltaDiscoveryResponse
	errs   chan error
}

func newDelta(t testing.TB, cc *grpc.ClientConn, nodeID string) *deltaStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := &deltaStream{t: t, stream: st, node: &core.Node{Id: nodeID, Cluster: "e2e"},
		resps: make(chan *discovery.DeltaDiscoveryResponse, 64), errs: make(chan error, 1)}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				d.errs <- err
				return
			}
			d.resps <- r
		}
	}()
	return d
}

func (d *deltaStream) send(req *discovery.DeltaDiscoveryRequest) {
	d.t.Helper()
	req.Node = d.node
	if err := d.stream.Send(req); err != nil {
		d.t.Fatal(err)
	}
}

func (d *deltaStream) recv(within time.Duration) *discovery.DeltaDiscoveryResponse {
	d.t.Helper()
	select {
	case r := <-d.resps:
		return r
	case err := <-d.errs:
		d.t.Fatalf("delta stream failed: %v", err)
	case <-time.After(within):
		d.t.Fatalf("no delta response within %v", within)
	}
	return nil
}

func (d *deltaStream) ack(r *discovery.DeltaDiscoveryResponse) {
	d.t.Helper()
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
}

func (d *deltaStream) quiet(dur time.Duration) {
	d.t.Helper()
	select {
	case r := <-d.resps:
		d.t.Fatalf("unexpected delta %s response with %d resources, %d removed", r.GetTypeUrl(), len(r.GetResources()), len(r.GetRemovedResources()))
	case err := <-d.errs:
		d.t.Fatalf("delta stream failed: %v", err)
	case <-time.After(dur):
	}
}
