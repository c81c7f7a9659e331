package xds

import (
	"context"
	"fmt"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/xds/store"
)

// The codec writes a response from its shared body and its own type URL
// and nonce, byte for byte as protobuf would marshal it; other messages
// are protobuf.
func TestCodecSharedResponse(t *testing.T) {
	st := store.New(nil)
	if err := st.Apply(items(t, cluster("a", 80)), nil); err != nil {
		t.Fatal(err)
	}
	sub := st.Subscribe(resource.ClusterType, true, nil, func() {})
	defer sub.Close()
	r := sub.Take()
	resp := &discovery.DiscoveryResponse{VersionInfo: r.Version, Resources: r.Resources, TypeUrl: r.TypeURL, Nonce: "17"}
	c := newCodec()
	got, err := c.Marshal(newSotwOut(resp, r.Body))
	if err != nil {
		t.Fatal(err)
	}
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Materialize()) != string(want) {
		t.Error("shared response bytes differ from the marshalled response")
	}
	if &got[0].ReadOnlyData()[0] != &r.Body[0] {
		t.Error("the codec copied the shared body")
	}

	plain, err := c.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var back discovery.DiscoveryResponse
	if err := c.Unmarshal(plain, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(resp, &back, protocmp.Transform()); diff != "" {
		t.Errorf("protobuf round trip (-want +got):\n%s", diff)
	}
}

// The codec reads a SotW request's fields as protobuf does, and its names
// on demand; malformed requests and names that are not UTF-8 are errors.
func TestCodecRequest(t *testing.T) {
	req := &discovery.DiscoveryRequest{
		VersionInfo:   "v1",
		Node:          &core.Node{Id: "n1", Cluster: "c1", UserAgentName: "envoy"},
		ResourceNames: []string{"a", "b", ""},
		TypeUrl:       resource.EndpointType,
		ResponseNonce: "3",
		ErrorDetail:   &statuspb.Status{Code: 3, Message: "bad"},
	}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	b = protowire.AppendTag(b, 99, protowire.VarintType) // unknown fields are skipped
	b = protowire.AppendVarint(b, 1)
	in := &sotwIn{}
	if err := newCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, in); err != nil {
		t.Fatal(err)
	}
	names, err := in.namesList()
	if err != nil {
		t.Fatal(err)
	}
	got := &discovery.DiscoveryRequest{VersionInfo: in.version, Node: in.node, ResourceNames: names, TypeUrl: in.typeURL,
		ResponseNonce: in.nonce, ErrorDetail: in.errorDetail}
	if diff := cmp.Diff(req, got, protocmp.Transform()); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	if !in.sameNames([]string{"a", "b", ""}) || in.sameNames([]string{"a", "b"}) || in.sameNames([]string{"a", "b", "c"}) {
		t.Error("sameNames does not compare the names in order")
	}

	bad := protowire.AppendTag(nil, reqNames, protowire.BytesType)
	bad = protowire.AppendBytes(bad, []byte{0xff, 0xfe})
	in = &sotwIn{}
	if err := newCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(bad)}, in); err != nil {
		t.Fatal(err)
	}
	if _, err := in.namesList(); err == nil {
		t.Error("a name that is not UTF-8 decoded")
	}
	for _, b := range [][]byte{{0x0a, 0x05, 'a'}, {0x12, 0x02, 0xff, 0xff}, {0xff}} {
		if err := newCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &sotwIn{}); err == nil {
			t.Errorf("malformed request %x read", b)
		}
	}
}

// Streams share response bytes but not nonces: each stream numbers its
// responses, across types, so every nonce is unique on its stream.
func TestSotwNoncesPerStream(t *testing.T) {
	f := newFixture(t)
	f.srv.Open()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.pub.Publish(ctx, &aggregator.Change{Clusters: []*aggregator.Cluster{cluster("a", 80), cluster("b", 81)}})
	var first *discovery.DiscoveryResponse
	for i := range 2 {
		st, err := f.ads.StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		node := &core.Node{Id: fmt.Sprintf("n%d", i)}
		nonces := map[string]bool{}
		recv := func() *discovery.DiscoveryResponse {
			t.Helper()
			r, ok := recvWithin(t, st, 5*time.Second)
			if !ok {
				t.Fatal("no response")
			}
			if nonces[r.GetNonce()] {
				t.Fatalf("nonce %q sent twice on one stream", r.GetNonce())
			}
			nonces[r.GetNonce()] = true
			return r
		}
		send := func(r *discovery.DiscoveryRequest) {
			t.Helper()
			r.Node = node
			if err := st.Send(r); err != nil {
				t.Fatal(err)
			}
		}
		send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType})
		cds := recv()
		send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: cds.GetVersionInfo(), ResponseNonce: cds.GetNonce()})
		send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: []string{"a", "b"}})
		eds := recv()
		send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: []string{"a", "b"}, VersionInfo: eds.GetVersionInfo(), ResponseNonce: eds.GetNonce()})
		f.pub.Publish(ctx, &aggregator.Change{Clusters: []*aggregator.Cluster{cluster("a", uint32(80+10*(i+1)))}})
		eds2 := recv()
		if eds2.GetTypeUrl() != resource.EndpointType || len(eds2.GetResources()) != 1 {
			t.Fatalf("after a change of a: %s with %d resources", eds2.GetTypeUrl(), len(eds2.GetResources()))
		}
		if i == 0 {
			first = cds
			continue
		}
		// The second stream's CDS response is the first stream's but for
		// its nonce.
		want := proto.Clone(first).(*discovery.DiscoveryResponse)
		want.Nonce = cds.GetNonce()
		if !proto.Equal(want, cds) {
			t.Error("stream 2's CDS response differs from stream 1's")
		}
	}
}

// A request whose nonce is not the type's last response's is ignored: it
// neither re-arms the subscription nor changes it.
func TestSotwStaleNonceIgnored(t *testing.T) {
	e := startEnv(t, Options{})
	e.publish(cluster("a", 80), cluster("b", 81))
	st := e.ads(e.dial())
	got := receive(st)
	node := &core.Node{Id: "n"}
	if err := st.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.EndpointType, ResourceNames: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	r := within(t, got, 5*time.Second)
	if r == nil {
		t.Fatal("no EDS response")
	}
	if err := st.Send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: []string{"a", "b"}, ResponseNonce: "stale"}); err != nil {
		t.Fatal(err)
	}
	if r2 := within(t, got, 300*time.Millisecond); r2 != nil {
		t.Fatalf("a stale request was answered: %v", r2)
	}
	if err := st.Send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: []string{"a", "b"}, ResponseNonce: r.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	r3 := within(t, got, 5*time.Second)
	if r3 == nil || len(r3.GetResources()) != 1 {
		t.Fatalf("after subscribing to b too: %v", r3)
	}
}

// The single-type SotW services are served as ADS is, a request's empty
// type URL meaning the service's.
// receive hands st's responses over until it fails.
func receive(st discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient) <-chan *discovery.DiscoveryResponse {
	ch := make(chan *discovery.DiscoveryResponse, 16)
	go func() {
		defer close(ch)
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			ch <- r
		}
	}()
	return ch
}

// within returns the next response within d, or nil.
func within(t *testing.T, ch <-chan *discovery.DiscoveryResponse, d time.Duration) *discovery.DiscoveryResponse {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		return nil
	}
}

func TestSotwSingleTypeStream(t *testing.T) {
	e := startEnv(t, Options{})
	e.publish(cluster("a", 80), cluster("b", 81))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := clusterservice.NewClusterDiscoveryServiceClient(e.dial()).StreamClusters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "n"}}); err != nil {
		t.Fatal(err)
	}
	r, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if r.GetTypeUrl() != resource.ClusterType || len(r.GetResources()) != 2 {
		t.Fatalf("CDS stream: %s with %d resources", r.GetTypeUrl(), len(r.GetResources()))
	}
	if err := st.Send(&discovery.DiscoveryRequest{VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	e.publish(cluster("c", 82))
	r, err = st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range r.GetResources() {
		names = append(names, resourceName(t, a))
	}
	if diff := cmp.Diff([]string{"a", "b", "c"}, names); diff != "" {
		t.Errorf("CDS after adding c (-want +got):\n%s", diff)
	}
	cancel()
}

func resourceName(t *testing.T, a *anypb.Any) string {
	t.Helper()
	m, err := a.UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	return m.(interface{ GetName() string }).GetName()
}

// A full-state type's first request is answered even when there is nothing
// to send: the response has no resources and no version.
func TestSotwEmptyFirstResponse(t *testing.T) {
	e := startEnv(t, Options{})
	st := e.ads(e.dial())
	if err := st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "n"}, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	r := recvSotw(t, st, 5*time.Second)
	if r.GetTypeUrl() != resource.ClusterType || len(r.GetResources()) != 0 || r.GetVersionInfo() != "" || r.GetNonce() == "" {
		t.Errorf("first CDS response on an empty store: %v", r)
	}
}
