package sdktest

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	// Register the Envoy types sources most often serve as resources, so
	// that CheckUpdate parses and validates them. Other types are checked
	// fully only when the test binary links them.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/sdk/overlay"
)

// typeURLPrefix is the only type URL prefix xdsbridge serves.
const typeURLPrefix = "type.googleapis.com/"

// CheckUpdate returns every way u breaks the source contract, or nil. It
// checks one update on its own: that a change set does not come before the
// first full state is Plugin's to check.
//
// Most rules are those xdsbridge's aggregator enforces (it would reject the
// offending item and count the rejection): every cluster has a non-empty
// name, unique in the update, and an overlay, if any, that xdsbridge
// accepts; every endpoint has an IP address (without a zone), a port in
// 1–65535, a known health, and an address and port no other endpoint of its
// cluster has; every resource has a "type.googleapis.com/" type URL and a
// serialized value, and, when its type is linked into the test binary,
// parses, passes the type's validation and has a name unique in the update.
//
// The others are what the SDK documents, which the host would accept but
// which point to a bug: an update carries something (data or a status); a
// full state lists no removals; a cluster is not both upserted and removed;
// removals name something; a status is connected or disconnected, and a
// disconnected status says why.
func CheckUpdate(u sdk.Update) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if !hasData(u) && u.Status == nil {
		bad("the update carries nothing: no data and no status")
	}
	if u.Full && len(u.RemovedClusters) > 0 {
		bad("a full state lists removed clusters %q: a full state removes by leaving out", u.RemovedClusters)
	}
	if u.Full && len(u.RemovedResources) > 0 {
		bad("a full state lists %d removed resources: a full state removes by leaving out", len(u.RemovedResources))
	}

	removed := map[string]bool{}
	for i, name := range u.RemovedClusters {
		if name == "" {
			bad("removed_clusters[%d]: empty name", i)
		}
		removed[name] = true
	}
	names := map[string]int{}
	for i := range u.Clusters {
		errs = append(errs, checkCluster(i, &u.Clusters[i], names, removed)...)
	}

	refs := map[sdk.ResourceRef]int{}
	for i, r := range u.Resources {
		errs = append(errs, checkResource(i, r, refs)...)
	}
	for i, r := range u.RemovedResources {
		if !strings.HasPrefix(r.TypeURL, typeURLPrefix) || len(r.TypeURL) == len(typeURLPrefix) {
			bad("removed_resources[%d]: type URL %q does not start with %q and a message name", i, r.TypeURL, typeURLPrefix)
		}
		if r.Name == "" {
			bad("removed_resources[%d]: empty name", i)
		}
	}

	if s := u.Status; s != nil {
		switch {
		case s.State != sdk.Connected && s.State != sdk.Disconnected:
			bad("status: state %s (want connected or disconnected; leave Status nil for no change)", s.State)
		case s.State == sdk.Disconnected && strings.TrimSpace(s.Reason) == "":
			bad("status: disconnected without a reason")
		}
	}
	return errors.Join(errs...)
}

func checkCluster(i int, c *sdk.Cluster, names map[string]int, removed map[string]bool) []error {
	var errs []error
	where := fmt.Sprintf("clusters[%d] %q", i, c.Name)
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
	}

	switch j, dup := names[c.Name]; {
	case c.Name == "":
		bad("empty name")
	case dup:
		bad("name repeats clusters[%d]", j)
	case removed[c.Name]:
		bad("also listed in removed_clusters")
	default:
		names[c.Name] = i
	}
	if len(c.Overlay) > 0 {
		if err := overlay.Validate(c.Overlay); err != nil {
			bad("overlay: %v", err)
		}
	}

	type key struct {
		addr netip.Addr
		port uint32
	}
	seen := map[key]int{}
	for j, e := range c.Endpoints {
		at := fmt.Sprintf("endpoints[%d] (%s port %d)", j, e.Address, e.Port)
		addr, err := netip.ParseAddr(e.Address)
		switch {
		case err != nil:
			bad("%s: address is not an IP address", at)
			continue
		case addr.Zone() != "":
			bad("%s: address has a zone", at)
			continue
		}
		if e.Port == 0 || e.Port > 65535 {
			bad("%s: port outside 1-65535", at)
		}
		if e.Health < sdk.HealthUnknown || e.Health > sdk.Degraded {
			bad("%s: unknown health %d", at, int(e.Health))
		}
		k := key{addr.Unmap(), e.Port}
		if first, dup := seen[k]; dup {
			bad("%s: same address and port as endpoints[%d]", at, first)
			continue
		}
		seen[k] = j
	}
	return errs
}

func checkResource(i int, r sdk.Resource, refs map[sdk.ResourceRef]int) []error {
	var errs []error
	where := fmt.Sprintf("resources[%d] (%s)", i, r.TypeURL)
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
	}

	if !strings.HasPrefix(r.TypeURL, typeURLPrefix) || len(r.TypeURL) == len(typeURLPrefix) {
		bad("type URL does not start with %q and a message name", typeURLPrefix)
		return errs
	}
	if len(r.Value) == 0 {
		bad("empty value (build resources with sdk.NewResource)")
		return errs
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(r.TypeURL)
	if err != nil {
		return errs // not linked here: type URL and bytes are all we can check
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(r.Value, m); err != nil {
		bad("does not parse: %v", err)
		return errs
	}
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			bad("invalid: %v", err)
		}
	}
	fd := m.ProtoReflect().Descriptor().Fields().ByName("name")
	if fd == nil || fd.Kind() != protoreflect.StringKind {
		bad("the type has no name field")
		return errs
	}
	name := m.ProtoReflect().Get(fd).String()
	if name == "" {
		bad("empty name")
		return errs
	}
	ref := sdk.ResourceRef{TypeURL: r.TypeURL, Name: name}
	if j, dup := refs[ref]; dup {
		bad("%q repeats resources[%d]", name, j)
		return errs
	}
	refs[ref] = i
	return errs
}
