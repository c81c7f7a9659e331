package fleet

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
)

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestRequests(t *testing.T) {
	node := appendNode(nil, 2, "n1", "c1")
	names := appendStrings(nil, 3, []string{"a", "b"})
	var got discovery.DiscoveryRequest
	if err := proto.Unmarshal(sotwRequest(nil, node, "v1", "7", clusterType, names, "bad"), &got); err != nil {
		t.Fatal(err)
	}
	if got.GetVersionInfo() != "v1" || got.GetNode().GetId() != "n1" || got.GetNode().GetCluster() != "c1" ||
		!cmp.Equal(got.GetResourceNames(), []string{"a", "b"}) || got.GetTypeUrl() != clusterType ||
		got.GetResponseNonce() != "7" || got.GetErrorDetail().GetMessage() != "bad" || got.GetErrorDetail().GetCode() != 3 {
		t.Errorf("sotw request: %v", &got)
	}
	var delta discovery.DeltaDiscoveryRequest
	if err := proto.Unmarshal(deltaRequest(nil, appendNode(nil, 1, "n2", "c2"), endpointType, []string{"x"}, []string{"y", "z"}, "3", ""), &delta); err != nil {
		t.Fatal(err)
	}
	if delta.GetNode().GetId() != "n2" || delta.GetTypeUrl() != endpointType || !cmp.Equal(delta.GetResourceNamesSubscribe(), []string{"x"}) ||
		!cmp.Equal(delta.GetResourceNamesUnsubscribe(), []string{"y", "z"}) || delta.GetResponseNonce() != "3" || delta.GetErrorDetail() != nil {
		t.Errorf("delta request: %v", &delta)
	}
}

func TestResponses(t *testing.T) {
	c1 := &clusterv3.Cluster{Name: "c0000001"}
	c2 := &clusterv3.Cluster{Name: "c0000002"}
	sotw, err := proto.Marshal(&discovery.DiscoveryResponse{VersionInfo: "v", TypeUrl: clusterType, Nonce: "n", Resources: []*anypb.Any{mustAny(t, c1), mustAny(t, c2)}})
	if err != nil {
		t.Fatal(err)
	}
	var r response
	if err := parseSotw(sotw, &r); err != nil {
		t.Fatal(err)
	}
	if string(r.version) != "v" || string(r.typeURL) != clusterType || string(r.nonce) != "n" || len(r.resources) != 2 {
		t.Fatalf("sotw: %+v", r)
	}
	for i, want := range []*clusterv3.Cluster{c1, c2} {
		name, err := resourceName(r.resources[i].value)
		if err != nil || string(name) != want.GetName() || string(r.resources[i].typeURL) != clusterType {
			t.Errorf("resource %d: %q %v", i, name, err)
		}
		var back clusterv3.Cluster
		if err := proto.Unmarshal(r.resources[i].value, &back); err != nil || !cmp.Equal(&back, want, protocmp.Transform()) {
			t.Errorf("resource %d does not round-trip: %v", i, err)
		}
	}

	delta, err := proto.Marshal(&discovery.DeltaDiscoveryResponse{
		SystemVersionInfo: "sv", TypeUrl: clusterType, Nonce: "dn",
		Resources:        []*discovery.Resource{{Name: "c0000001", Version: "1", Resource: mustAny(t, c1)}},
		RemovedResources: []string{"c0000009"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := parseDelta(delta, &r); err != nil {
		t.Fatal(err)
	}
	if string(r.version) != "sv" || string(r.nonce) != "dn" || len(r.resources) != 1 || string(r.resources[0].name) != "c0000001" ||
		len(r.removed) != 1 || string(r.removed[0]) != "c0000009" {
		t.Fatalf("delta: %+v", r)
	}
	if err := parseSotw([]byte{0x12, 0x05, 0x01}, &r); err == nil {
		t.Error("truncated response parsed")
	}
}

func TestBitset(t *testing.T) {
	a, b := newBitset(200), newBitset(200)
	for _, i := range []int32{0, 63, 64, 130, 199} {
		a.set(i)
	}
	b.set(64)
	var missing []int32
	a.forEachMissing(b, func(i int32) { missing = append(missing, i) })
	if !cmp.Equal(missing, []int32{0, 63, 130, 199}) {
		t.Errorf("missing %v", missing)
	}
	a.clear(63)
	if a.has(63) || !a.has(130) {
		t.Error("clear")
	}
}
