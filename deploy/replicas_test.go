package deploy

import (
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// TestReplicaSwitch is what a client sees when its replica goes away and it
// reconnects through the Service to another: two replicas serving the same
// sources serve the same resources under the same versions, so a delta
// client that tells the new replica the versions it holds is sent none of
// them again, and a SotW client gets the identical state (same version,
// same bytes), which Envoy applies as no change.
func TestReplicaSwitch(t *testing.T) {
	a, b := serveSeed(t, bridgeBin), serveSeed(t, bridgeBin)

	// SotW: the same versions and resources from either replica.
	cdsA, edsA := fetchSeed(t, dialADS(t, a.grpcAddr, "sidecar-1"))
	cdsB, edsB := fetchSeed(t, dialADS(t, b.grpcAddr, "sidecar-1"))
	for _, p := range []struct {
		name string
		a, b *discoveryv3.DiscoveryResponse
	}{{"CDS", cdsA, cdsB}, {"EDS", edsA, edsB}} {
		if p.a.GetVersionInfo() != p.b.GetVersionInfo() {
			t.Errorf("%s: replica A serves version %q, B %q", p.name, p.a.GetVersionInfo(), p.b.GetVersionInfo())
		}
		if len(p.a.GetResources()) != len(p.b.GetResources()) {
			t.Fatalf("%s: replica A serves %d resources, B %d", p.name, len(p.a.GetResources()), len(p.b.GetResources()))
		}
		for i := range p.a.GetResources() {
			if !proto.Equal(p.a.GetResources()[i], p.b.GetResources()[i]) {
				t.Errorf("%s: the replicas serve different bytes for resource %d", p.name, i)
			}
		}
	}

	// Delta: what the client holds from A, by name and version.
	da := dialDelta(t, a.grpcAddr)
	cds := da.request(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType})
	held := map[string]map[string]string{resource.ClusterType: versions(cds)}
	da.ack(cds)
	eds := da.request(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"some_service"}})
	held[resource.EndpointType] = versions(eds)
	da.ack(eds)
	if len(held[resource.ClusterType]) != 1 || len(held[resource.EndpointType]) != 1 {
		t.Fatalf("delta from A: clusters %v, endpoints %v; want some_service in each", held[resource.ClusterType], held[resource.EndpointType])
	}

	// A goes away; the client reconnects to B with what it holds.
	db := dialDelta(t, b.grpcAddr)
	r := db.request(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, InitialResourceVersions: held[resource.ClusterType]})
	if len(r.GetResources()) != 0 || len(r.GetRemovedResources()) != 0 {
		t.Errorf("delta CDS from B after holding A's versions: %d resources and removals %v re-sent, want none", len(r.GetResources()), r.GetRemovedResources())
	}
	db.ack(r)
	db.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"some_service"}, InitialResourceVersions: held[resource.EndpointType]})
	db.quiet(500 * time.Millisecond)

	// The check can fail: a client holding another version gets the resource.
	dc := dialDelta(t, b.grpcAddr)
	r = dc.request(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, InitialResourceVersions: map[string]string{"some_service": "stale"}})
	if len(r.GetResources()) != 1 {
		t.Errorf("delta CDS from B for a stale version: %d resources, want some_service", len(r.GetResources()))
	}
}

// versions returns the names and versions a delta response carries.
func versions(r *discoveryv3.DeltaDiscoveryResponse) map[string]string {
	out := map[string]string{}
	for _, res := range r.GetResources() {
		out[res.GetName()] = res.GetVersion()
	}
	return out
}

// deltaStream is one delta ADS stream.
type deltaStream struct {
	t      *testing.T
	stream grpc.BidiStreamingClient[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]
	recvd  chan *discoveryv3.DeltaDiscoveryResponse
}

func dialDelta(t *testing.T, addr string) *deltaStream {
	t.Helper()
	client, ctx, cancel := dialClient(t, addr)
	s, err := client.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := &deltaStream{t: t, stream: s, recvd: make(chan *discoveryv3.DeltaDiscoveryResponse, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			r, err := s.Recv()
			if err != nil {
				return
			}
			select {
			case d.recvd <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	// The receiver ends when the stream does: cancel, then wait for it.
	t.Cleanup(func() { cancel(); <-done })
	return d
}

func (d *deltaStream) send(req *discoveryv3.DeltaDiscoveryRequest) {
	d.t.Helper()
	req.Node = nodeFor("sidecar-1")
	if err := d.stream.Send(req); err != nil {
		d.t.Fatalf("send %s: %v", req.GetTypeUrl(), err)
	}
}

// request sends req and waits for the response to it.
func (d *deltaStream) request(req *discoveryv3.DeltaDiscoveryRequest) *discoveryv3.DeltaDiscoveryResponse {
	d.t.Helper()
	d.send(req)
	select {
	case r := <-d.recvd:
		if r.GetTypeUrl() != req.GetTypeUrl() {
			d.t.Fatalf("got a response of %s, want %s", r.GetTypeUrl(), req.GetTypeUrl())
		}
		return r
	case <-time.After(10 * time.Second):
		d.t.Fatalf("no %s response within 10s", req.GetTypeUrl())
		return nil
	}
}

func (d *deltaStream) ack(r *discoveryv3.DeltaDiscoveryResponse) {
	d.t.Helper()
	d.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
}

// quiet fails the test if a response arrives within dur.
func (d *deltaStream) quiet(dur time.Duration) {
	d.t.Helper()
	select {
	case r := <-d.recvd:
		d.t.Errorf("unexpected %s response: %d resources, removed %v", r.GetTypeUrl(), len(r.GetResources()), r.GetRemovedResources())
	case <-time.After(dur):
	}
}
