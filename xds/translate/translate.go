// Package translate turns the aggregator's model into Envoy v3 resources: an
// EDS Cluster and a ClusterLoadAssignment per aggregator.Cluster.
//
// The package is pure: no I/O, no state, and the same input always gives
// protos whose deterministic marshalling is byte for byte the same, whatever
// the order of the input endpoints.
//
// Every ClusterLoadAssignment it builds is accepted by both Envoy and gRPC's
// xDS client (grpc-go's EDS validation is the stricter of the two):
//
//   - every LocalityLbEndpoints has a Locality, even when all its fields are
//     empty, and a load_balancing_weight of at least 1;
//   - no two endpoints of a cluster share an address and port;
//   - priorities run from 0 without gaps;
//   - the weights of the endpoints of a locality, and the weights of the
//     localities of a priority, each sum to at most 2^32-1.
//
// See LoadAssignment for how it gets there.
package translate

import (
	"bytes"
	"math"
	"net/netip"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/sdk"
)

// LoadAssignment builds the ClusterLoadAssignment for c.
//
// Endpoints are grouped into one LocalityLbEndpoints per (priority,
// locality), ordered by priority, then region, zone and sub-zone; inside a
// group they are ordered by address (as numbers, IPv4 first, as the
// aggregator orders them), then port. The order of c.Endpoints does not
// matter.
//
// To keep every output acceptable to Envoy and gRPC, LoadAssignment
// normalises what the aggregator should already have normalised:
//
//   - Empty locality. An endpoint without a locality goes into a
//     LocalityLbEndpoints whose Locality is present but empty. gRPC rejects a
//     missing Locality, not an empty one: it names the empty locality
//     {region="", zone="", sub_zone=""} and treats it like any other, and
//     Envoy does the same. So the documented default is "the empty
//     locality", not a made-up name.
//   - Duplicate address and port. gRPC rejects a whole assignment in which
//     two endpoints share an address and port, even across localities. Only
//     the first in the order above is kept (lowest priority number, then
//     locality); exact ties are broken on the address's spelling ("::1" or
//     "0::1", "10.0.0.1" or "::ffff:10.0.0.1" are one address), weight,
//     health, hostname and metadata, so that the choice never depends on
//     the input order.
//   - Priority gaps. gRPC rejects an assignment whose priorities skip a
//     number, and Envoy documents that they must not. Priorities are
//     renumbered 0, 1, 2, … in their order, which keeps their meaning:
//     an empty priority level takes no traffic anyway.
//   - Weights. An endpoint weight of 0 means 1. A locality's
//     load_balancing_weight is the sum of its endpoints' weights, so gRPC's
//     two-level pick (locality by weight, then endpoint by weight) gives
//     each endpoint the same share as a flat weighted pick, and Envoy's
//     locality-weighted balancing does the same. Envoy and gRPC both reject
//     a locality whose endpoint weights sum to more than 2^32-1, and a
//     priority whose locality weights do: when the endpoint weights of one
//     priority sum to more than that, every endpoint weight in the priority
//     is scaled down in proportion (rounding down, never below 1) so that
//     the sum fits. The locality weight is a sum that saturates at 2^32-1;
//     after scaling it never needs to.
func LoadAssignment(c *aggregator.Cluster) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: c.Name}
	eps := sortedUnique(c.Endpoints)
	if len(eps) == 0 {
		return cla
	}

	// Allocate the per-endpoint messages in blocks: one allocation per type
	// instead of one per endpoint.
	n := len(eps)
	lbEps := make([]endpointv3.LbEndpoint, n)
	hostIDs := make([]endpointv3.LbEndpoint_Endpoint, n)
	endpoints := make([]endpointv3.Endpoint, n)
	addrs := make([]corev3.Address, n)
	sockAddrWrappers := make([]corev3.Address_SocketAddress, n)
	sockAddrs := make([]corev3.SocketAddress, n)
	ports := make([]corev3.SocketAddress_PortValue, n)
	weights := make([]wrapperspb.UInt32Value, n)
	lbPtrs := make([]*endpointv3.LbEndpoint, n)

	var groups []*endpointv3.LocalityLbEndpoints
	priority := uint32(0) // renumbered priority of eps[i:]
	for i := 0; i < n; priority++ {
		// eps[i:j] share a priority.
		j := i + 1
		for j < n && eps[j].Priority == eps[i].Priority {
			j++
		}
		var total uint64
		for _, e := range eps[i:j] {
			total += uint64(effectiveWeight(e.Weight))
		}
		scale := total > math.MaxUint32
		// With budget = max - count, the sum of max(1, floor(w*budget/total))
		// is at most budget + count = max.
		budget := uint64(math.MaxUint32) - uint64(j-i)

		for i < j {
			// eps[i:k] also share a locality.
			k := i + 1
			for k < j && eps[k].Locality == eps[i].Locality {
				k++
			}
			var localityWeight uint32
			for x := i; x < k; x++ {
				e := eps[x]
				w := effectiveWeight(e.Weight)
				if scale {
					w = uint32(max(1, uint64(w)*budget/total))
				}
				localityWeight = saturatingAdd(localityWeight, w)

				ports[x].PortValue = e.Port
				sockAddrs[x].Address = e.Address
				sockAddrs[x].PortSpecifier = &ports[x]
				sockAddrWrappers[x].SocketAddress = &sockAddrs[x]
				addrs[x].Address = &sockAddrWrappers[x]
				endpoints[x].Address = &addrs[x]
				endpoints[x].Hostname = e.Hostname
				hostIDs[x].Endpoint = &endpoints[x]
				weights[x].Value = w
				lb := &lbEps[x]
				lb.HostIdentifier = &hostIDs[x]
				lb.HealthStatus = healthStatus(e.Health)
				lb.LoadBalancingWeight = &weights[x]
				lb.Metadata = lbMetadata(e.Metadata)
				lbPtrs[x] = lb
			}
			groups = append(groups, &endpointv3.LocalityLbEndpoints{
				Locality:            locality(eps[i]),
				LbEndpoints:         lbPtrs[i:k:k],
				LoadBalancingWeight: wrapperspb.UInt32(localityWeight),
				Priority:            priority,
			})
			i = k
		}
	}
	cla.Endpoints = groups
	return cla
}

// locality is never nil: see LoadAssignment.
func locality(e *sdk.Endpoint) *corev3.Locality {
	return &corev3.Locality{
		Region:  e.Locality.Region,
		Zone:    e.Locality.Zone,
		SubZone: e.Locality.SubZone,
	}
}

// sortedUnique returns the endpoints of in, sorted by compareEndpoints, with
// only the first of those sharing an address and port.
func sortedUnique(in []aggregator.Endpoint) []*sdk.Endpoint {
	eps := make([]keyed, len(in))
	for i := range in {
		e := &in[i].Endpoint
		eps[i].Endpoint = e
		if a, err := netip.ParseAddr(e.Address); err == nil {
			eps[i].addr = a.Unmap()
		}
	}
	slices.SortFunc(eps, compareEndpoints)

	type hostPort struct {
		addr netip.Addr
		raw  string // Address, when it does not parse
		port uint32
	}
	seen := make(map[hostPort]struct{}, len(eps))
	out := make([]*sdk.Endpoint, 0, len(eps))
	for _, e := range eps {
		k := hostPort{addr: e.addr, port: e.Port}
		if !e.addr.IsValid() {
			k.raw = e.Address
		}
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		out = append(out, e.Endpoint)
	}
	return out
}

// keyed is an endpoint and its parsed address, the zero Addr when Address
// does not parse (the aggregator rejects those; the translator still
// serves them, in a stable order).
type keyed struct {
	*sdk.Endpoint
	addr netip.Addr
}

// compareEndpoints orders endpoints by priority, locality, address (as
// numbers, IPv4 before IPv6, as the aggregator orders them) and port, then,
// for endpoints equal in all of those, by the attributes served, so that
// the order is total and never depends on the input order.
func compareEndpoints(a, b keyed) int {
	switch {
	case a.Priority != b.Priority:
		if a.Priority < b.Priority {
			return -1
		}
		return 1
	case a.Locality.Region != b.Locality.Region:
		return strings.Compare(a.Locality.Region, b.Locality.Region)
	case a.Locality.Zone != b.Locality.Zone:
		return strings.Compare(a.Locality.Zone, b.Locality.Zone)
	case a.Locality.SubZone != b.Locality.SubZone:
		return strings.Compare(a.Locality.SubZone, b.Locality.SubZone)
	}
	if c := a.addr.Compare(b.addr); c != 0 {
		return c
	}
	switch {
	case a.Port != b.Port:
		if a.Port < b.Port {
			return -1
		}
		return 1
	case a.Address != b.Address: // two spellings of one address, or unparsed
		return strings.Compare(a.Address, b.Address)
	}
	// Duplicates: rare, so the cost below does not matter.
	switch wa, wb := effectiveWeight(a.Weight), effectiveWeight(b.Weight); {
	case wa != wb:
		if wa < wb {
			return -1
		}
		return 1
	case healthStatus(a.Health) != healthStatus(b.Health):
		if healthStatus(a.Health) < healthStatus(b.Health) {
			return -1
		}
		return 1
	case a.Hostname != b.Hostname:
		return strings.Compare(a.Hostname, b.Hostname)
	}
	return bytes.Compare(metadataKey(a.Metadata), metadataKey(b.Metadata))
}

// metadataKey is a canonical encoding of metadata, for comparisons.
func metadataKey(md map[string]any) []byte {
	if len(md) == 0 {
		return nil
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(toStruct(md))
	return b
}

func effectiveWeight(w uint32) uint32 {
	if w == 0 {
		return 1
	}
	return w
}

func saturatingAdd(a, b uint32) uint32 {
	if s := a + b; s >= a {
		return s
	}
	return math.MaxUint32
}

func healthStatus(h sdk.Health) corev3.HealthStatus {
	switch h {
	case sdk.Healthy:
		return corev3.HealthStatus_HEALTHY
	case sdk.Unhealthy:
		return corev3.HealthStatus_UNHEALTHY
	case sdk.Draining:
		return corev3.HealthStatus_DRAINING
	case sdk.Degraded:
		return corev3.HealthStatus_DEGRADED
	default:
		return corev3.HealthStatus_UNKNOWN
	}
}
