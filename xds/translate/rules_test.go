package translate_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/xds/translate"
)

// checkAccepted applies the rules grpc-go v1.85.0 applies to an EDS
// resource (internal/xds/xdsclient/xdsresource/unmarshal_eds.go, not
// importable from outside grpc) and those Envoy documents, plus the
// translator's own ordering promises. grpcTest in grpc_test.go runs the real
// client over the golden files.
func checkAccepted(cla *endpointv3.ClusterLoadAssignment) error {
	if cla.GetClusterName() == "" {
		return fmt.Errorf("empty cluster name")
	}
	if err := cla.ValidateAll(); err != nil {
		return err
	}
	type localityKey struct {
		priority uint32
		l        string
	}
	seenLocality := map[localityKey]bool{}
	seenAddr := map[string]bool{}
	prioritySum := map[uint32]uint64{}
	var prev *endpointv3.LocalityLbEndpoints
	for _, lle := range cla.GetEndpoints() {
		l := lle.GetLocality()
		if l == nil {
			return fmt.Errorf("locality without ID")
		}
		w := lle.GetLoadBalancingWeight().GetValue()
		if w == 0 {
			return fmt.Errorf("locality %v: weight 0 (gRPC ignores the locality)", l)
		}
		p := lle.GetPriority()
		if prioritySum[p] += uint64(w); prioritySum[p] > math.MaxUint32 {
			return fmt.Errorf("priority %d: locality weights sum past 2^32-1", p)
		}
		k := localityKey{p, fmt.Sprintf("%q/%q/%q", l.GetRegion(), l.GetZone(), l.GetSubZone())}
		if seenLocality[k] {
			return fmt.Errorf("duplicate locality %s at priority %d", k.l, p)
		}
		seenLocality[k] = true
		if prev != nil && compareLocality(prev, lle) >= 0 {
			return fmt.Errorf("localities out of order: %v before %v", prev.GetLocality(), l)
		}
		prev = lle

		if len(lle.GetLbEndpoints()) == 0 {
			return fmt.Errorf("locality %v without endpoints", l)
		}
		var sum uint64
		var prevEp *corev3.SocketAddress
		for _, lb := range lle.GetLbEndpoints() {
			ew := uint32(1)
			if lb.GetLoadBalancingWeight() != nil {
				ew = lb.GetLoadBalancingWeight().GetValue()
			}
			if ew == 0 {
				return fmt.Errorf("endpoint with zero weight")
			}
			if sum += uint64(ew); sum > math.MaxUint32 {
				return fmt.Errorf("locality %v: endpoint weights sum past 2^32-1", l)
			}
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			a := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
			if seenAddr[a] {
				return fmt.Errorf("duplicate endpoint with the same address %s", a)
			}
			seenAddr[a] = true
			if prevEp != nil {
				pa, _ := netip.ParseAddr(prevEp.GetAddress())
				a, _ := netip.ParseAddr(sa.GetAddress())
				if c := pa.Unmap().Compare(a.Unmap()); c > 0 || c == 0 && prevEp.GetPortValue() >= sa.GetPortValue() {
					return fmt.Errorf("endpoints out of order: %s before %s", prevEp, sa)
				}
			}
			prevEp = sa
		}
		if uint64(w) != sum {
			return fmt.Errorf("locality %v: weight %d, endpoint weights sum to %d", l, w, sum)
		}
	}
	for i := range len(prioritySum) {
		if _, ok := prioritySum[uint32(i)]; !ok {
			return fmt.Errorf("priority %d missing", i)
		}
	}
	return nil
}

func compareLocality(a, b *endpointv3.LocalityLbEndpoints) int {
	switch {
	case a.GetPriority() != b.GetPriority():
		return int(a.GetPriority()) - int(b.GetPriority())
	case a.GetLocality().GetRegion() != b.GetLocality().GetRegion():
		return cmpString(a.GetLocality().GetRegion(), b.GetLocality().GetRegion())
	case a.GetLocality().GetZone() != b.GetLocality().GetZone():
		return cmpString(a.GetLocality().GetZone(), b.GetLocality().GetZone())
	}
	return cmpString(a.GetLocality().GetSubZone(), b.GetLocality().GetSubZone())
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestCheckAcceptedCanFail makes sure checkAccepted catches what gRPC
// rejects.
func TestCheckAcceptedCanFail(t *testing.T) {
	good := func() *endpointv3.ClusterLoadAssignment {
		return translate.LoadAssignment(&aggregator.Cluster{Name: "a", Endpoints: []aggregator.Endpoint{
			{Endpoint: sdk.Endpoint{Address: "10.0.0.1", Port: 80}},
			{Endpoint: sdk.Endpoint{Address: "10.0.0.2", Port: 80, Priority: 1}},
		}})
	}
	if err := checkAccepted(good()); err != nil {
		t.Fatal(err)
	}
	breakers := map[string]func(*endpointv3.ClusterLoadAssignment){
		"nil locality": func(c *endpointv3.ClusterLoadAssignment) { c.Endpoints[0].Locality = nil },
		"weight 0":     func(c *endpointv3.ClusterLoadAssignment) { c.Endpoints[0].LoadBalancingWeight = nil },
		"priority gap": func(c *endpointv3.ClusterLoadAssignment) { c.Endpoints[1].Priority = 2 },
		"duplicate": func(c *endpointv3.ClusterLoadAssignment) {
			c.Endpoints[1].LbEndpoints[0] = c.Endpoints[0].LbEndpoints[0]
		},
		"no name":       func(c *endpointv3.ClusterLoadAssignment) { c.ClusterName = "" },
		"same locality": func(c *endpointv3.ClusterLoadAssignment) { c.Endpoints[1].Priority = 0 },
	}
	for name, breakIt := range breakers {
		cla := good()
		breakIt(cla)
		if checkAccepted(cla) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestLoadAssignmentAccepted runs random clusters, with duplicates, priority
// gaps, empty localities and huge weights, through checkAccepted.
func TestLoadAssignmentAccepted(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	weights := []uint32{0, 1, 7, math.MaxUint32 / 3, math.MaxUint32 - 1, math.MaxUint32}
	for i := range 300 {
		c := &aggregator.Cluster{Name: fmt.Sprintf("c%d", i)}
		want := map[string]bool{}
		for range r.IntN(40) {
			e := sdk.Endpoint{
				Address:  fmt.Sprintf("10.0.0.%d", r.IntN(12)),
				Port:     uint32(80 + r.IntN(2)),
				Weight:   weights[r.IntN(len(weights))],
				Health:   sdk.Health(r.IntN(7)),
				Locality: sdk.Locality{Region: []string{"", "r1", "r2"}[r.IntN(3)], Zone: []string{"", "z1"}[r.IntN(2)]},
				Priority: uint32(r.IntN(3) * 3),
			}
			want[net.JoinHostPort(e.Address, strconv.Itoa(int(e.Port)))] = true
			c.Endpoints = append(c.Endpoints, aggregator.Endpoint{Endpoint: e})
		}
		cla := translate.LoadAssignment(c)
		if err := checkAccepted(cla); err != nil {
			t.Fatalf("cluster %d: %v", i, err)
		}
		got := 0
		for _, lle := range cla.GetEndpoints() {
			got += len(lle.GetLbEndpoints())
		}
		if got != len(want) {
			t.Fatalf("cluster %d: %d endpoints out, want one per address, %d", i, got, len(want))
		}
	}
}
