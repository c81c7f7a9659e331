package aggregator

import (
	"fmt"
	"net/netip"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// Rejection reasons, used as metric labels and in log lines.
const (
	ReasonEmptyClusterName  = "empty_cluster_name"
	ReasonBadAddress        = "bad_address"
	ReasonBadPort           = "bad_port"
	ReasonBadHealth         = "bad_health"
	ReasonDuplicateEndpoint = "duplicate_endpoint"
	ReasonDuplicateCluster  = "duplicate_cluster"
	ReasonBadOverlay        = "bad_overlay"
	ReasonBadResource       = "bad_resource"
	ReasonConflict          = "conflict"
)

// rejection is one item the aggregator refused, with where it came from.
type rejection struct {
	reason string
	msg    string
}

func (r rejection) String() string { return r.msg }

// validateCluster checks c and returns the cluster with bad endpoints
// removed, plus what it removed. ok is false when the whole cluster is
// unusable.
func validateCluster(source string, c *sdk.Cluster, checkOverlay func([]byte) error) (out *sdk.Cluster, rejected []rejection, ok bool) {
	if c.Name == "" {
		return nil, []rejection{{ReasonEmptyClusterName, fmt.Sprintf("source %q: cluster with an empty name (%d endpoints) rejected", source, len(c.Endpoints))}}, false
	}
	if checkOverlay != nil && len(c.Overlay) > 0 {
		if err := checkOverlay(c.Overlay); err != nil {
			return nil, []rejection{{ReasonBadOverlay, fmt.Sprintf("source %q: cluster %q: overlay rejected, keeping the previous version: %v", source, c.Name, err)}}, false
		}
	}
	type key struct {
		addr netip.Addr
		port uint32
	}
	seen := make(map[key]struct{}, len(c.Endpoints))
	good := make([]sdk.Endpoint, 0, len(c.Endpoints))
	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		// where names the endpoint in a rejection; built only for one.
		where := func() string {
			return fmt.Sprintf("source %q: cluster %q: endpoint %d (%s)", source, c.Name, i, hostPort(e.Address, e.Port))
		}
		addr, err := netip.ParseAddr(e.Address)
		switch {
		case err != nil || addr.Zone() != "":
			rejected = append(rejected, rejection{ReasonBadAddress, where() + ": address is not an IP address"})
			continue
		case e.Port == 0 || e.Port > 65535:
			rejected = append(rejected, rejection{ReasonBadPort, fmt.Sprintf("%s: port %d outside 1-65535", where(), e.Port)})
			continue
		case e.Health < sdk.HealthUnknown || e.Health > sdk.Degraded:
			rejected = append(rejected, rejection{ReasonBadHealth, fmt.Sprintf("%s: unknown health value %d", where(), int(e.Health))})
			continue
		}
		k := key{addr.Unmap(), e.Port}
		if _, dup := seen[k]; dup {
			rejected = append(rejected, rejection{ReasonDuplicateEndpoint, where() + ": duplicate address and port"})
			continue
		}
		seen[k] = struct{}{}
		ep := *e
		ep.Address = addr.Unmap().String() // one spelling per address
		good = append(good, ep)
	}
	cp := *c
	cp.Endpoints = good
	return &cp, rejected, true
}

func hostPort(addr string, port uint32) string {
	if strings.Contains(addr, ":") {
		return fmt.Sprintf("[%s]:%d", addr, port)
	}
	return fmt.Sprintf("%s:%d", addr, port)
}

// generatedTypes are built from sources' clusters: a raw resource of these
// types would share (and on removal, delete) a generated one's name.
var generatedTypes = map[string]bool{
	"type.googleapis.com/envoy.config.cluster.v3.Cluster":                true,
	"type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment": true,
}

// validateResource checks that r is a known Envoy type that parses, passes
// the type's own validation, and carries the name it claims.
func validateResource(source string, r *sdk.Resource) (sdk.Resource, *rejection) {
	bad := func(format string, args ...any) (sdk.Resource, *rejection) {
		return sdk.Resource{}, &rejection{ReasonBadResource, fmt.Sprintf("source %q: resource %s %q: ", source, r.TypeURL, r.Name) + fmt.Sprintf(format, args...)}
	}
	name := strings.TrimPrefix(r.TypeURL, "type.googleapis.com/")
	if generatedTypes[r.TypeURL] {
		return bad("clusters and their endpoints are generated from a source's clusters; send it as a cluster, not a resource")
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(r.TypeURL)
	if err != nil || name == r.TypeURL {
		return bad("unknown type")
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(r.Value, m); err != nil {
		return bad("does not parse: %v", err)
	}
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return bad("invalid: %v", err)
		}
	}
	fd := m.ProtoReflect().Descriptor().Fields().ByName("name")
	if fd == nil {
		return bad("type has no name field")
	}
	got := m.ProtoReflect().Get(fd).String()
	if got == "" {
		return bad("empty name")
	}
	out := *r
	out.Name = got
	return out, nil
}
