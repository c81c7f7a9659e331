package consul

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// TagsKey is the endpoint metadata key (under filter_metadata["envoy.lb"])
// holding an instance's Consul tags as a sorted list of strings. Consul
// metadata keys cannot contain a dot, so it never collides with one.
const TagsKey = "consul.tags"

// Consul's check states, and the aggregate state of an instance in
// maintenance mode.
const (
	statusPassing     = "passing"
	statusWarning     = "warning"
	statusCritical    = "critical"
	statusMaintenance = "maintenance"
)

// The check IDs Consul uses for maintenance mode.
const (
	nodeMaintCheck     = "_node_maintenance"
	serviceMaintPrefix = "_service_maintenance:"
)

// healthEntry is one instance as /v1/health/service lists it: only the
// fields the source reads, so decoding skips the rest.
type healthEntry struct {
	Node struct {
		Node       string
		Address    string
		Datacenter string
		Meta       map[string]string
	}
	Service struct {
		ID      string
		Service string
		Address string
		Port    int
		Tags    []string
		Meta    map[string]string
		Weights struct {
			Passing int
			Warning int
		}
	}
	Checks []struct {
		CheckID string
		Status  string
	}
}

// status aggregates an instance's checks as Consul does: maintenance beats
// critical beats warning beats passing; no checks is passing. A status
// Consul does not document counts as critical.
func (e *healthEntry) status() string {
	worst := statusPassing
	for _, c := range e.Checks {
		if c.CheckID == nodeMaintCheck || strings.HasPrefix(c.CheckID, serviceMaintPrefix) {
			return statusMaintenance
		}
		switch c.Status {
		case statusPassing:
		case statusWarning:
			if worst == statusPassing {
				worst = statusWarning
			}
		default:
			worst = statusCritical
		}
	}
	return worst
}

// mapper turns Consul instances into endpoints.
type mapper struct {
	health     string // HealthPassing, HealthWarning or HealthAny
	zoneKey    string
	subZoneKey string
}

// serviceData is one service in one datacenter, as the source keeps it.
type serviceData struct {
	// present: at least one instance matched the selection (tags,
	// node_meta, filter), whatever its health. A service is served as a
	// cluster while it is present in some datacenter.
	present bool
	// endpoints are the instances healthy enough to serve, sorted.
	endpoints []sdk.Endpoint
	// nodes are the instances' nodes, sorted, for health-change hints.
	nodes []string
	// unusable names instances skipped for a bad address or port.
	unusable []string
	// notPassing counts instances whose checks are not all passing,
	// whatever the health threshold.
	notPassing int
	// instances are every instance that matched the selection, sorted.
	instances []instanceRef
}

// instanceRef names an instance.
type instanceRef struct{ node, id string }

// convert maps the entries of one service in one datacenter. region is the
// configured datacenter name, or "" to take each node's datacenter.
func (m mapper) convert(entries []healthEntry, priority uint32, region string) serviceData {
	d := serviceData{present: len(entries) > 0}
	for i := range entries {
		e := &entries[i]
		d.nodes = append(d.nodes, e.Node.Node)
		d.instances = append(d.instances, instanceRef{e.Node.Node, e.Service.ID})
		if e.status() != statusPassing {
			d.notPassing++
		}
		ep, ok, usable := m.endpoint(e, priority, region)
		if !usable {
			d.unusable = append(d.unusable, e.Node.Node+"/"+e.Service.ID)
			continue
		}
		if ok {
			d.endpoints = append(d.endpoints, ep)
		}
	}
	slices.Sort(d.nodes)
	d.nodes = slices.Compact(d.nodes)
	slices.SortFunc(d.instances, func(a, b instanceRef) int {
		return cmp.Or(cmp.Compare(a.node, b.node), cmp.Compare(a.id, b.id))
	})
	sortEndpoints(d.endpoints)
	return d
}

// endpoint maps one instance. ok is false when its health or weight keeps
// it out; usable is false when its address or port cannot be served.
func (m mapper) endpoint(e *healthEntry, priority uint32, region string) (ep sdk.Endpoint, ok, usable bool) {
	addr := e.Service.Address
	if addr == "" {
		addr = e.Node.Address
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Zone() != "" || e.Service.Port < 1 || e.Service.Port > 65535 {
		return sdk.Endpoint{}, false, false
	}

	var health sdk.Health
	weight := e.Service.Weights.Passing
	switch st := e.status(); st {
	case statusPassing:
		health = sdk.Healthy
	case statusWarning:
		if m.health == HealthPassing {
			return sdk.Endpoint{}, false, true
		}
		health, weight = sdk.Degraded, e.Service.Weights.Warning
	default:
		if m.health != HealthAny {
			return sdk.Endpoint{}, false, true
		}
		health = sdk.Unhealthy
		if st == statusMaintenance {
			health = sdk.Draining
		}
	}
	// Consul's weight 0 means "send no traffic"; Envoy has no weight 0
	// (0 means unset, i.e. 1), so such an instance is left out.
	if weight <= 0 {
		return sdk.Endpoint{}, false, true
	}

	if region == "" {
		region = e.Node.Datacenter
	}
	ep = sdk.Endpoint{
		Address:  ip.Unmap().String(),
		Port:     uint32(e.Service.Port),
		Weight:   uint32(min(weight, 1<<31)),
		Health:   health,
		Priority: priority,
		Locality: sdk.Locality{Region: region},
		Metadata: metadata(e.Service.Tags, e.Service.Meta),
	}
	if m.zoneKey != "" {
		ep.Locality.Zone = e.Node.Meta[m.zoneKey]
	}
	if m.subZoneKey != "" {
		ep.Locality.SubZone = e.Node.Meta[m.subZoneKey]
	}
	return ep, true, true
}

// metadata lays out an instance's tags and service metadata for
// filter_metadata["envoy.lb"]: each metadata entry as a string value under
// its own key, and the tags, sorted and without duplicates, as a list under
// TagsKey. It returns nil when there is neither.
func metadata(tags []string, meta map[string]string) map[string]any {
	if len(tags) == 0 && len(meta) == 0 {
		return nil
	}
	md := make(map[string]any, len(meta)+1)
	for k, v := range meta {
		md[k] = v
	}
	if len(tags) > 0 {
		sorted := slices.Clone(tags)
		slices.Sort(sorted)
		sorted = slices.Compact(sorted)
		list := make([]any, len(sorted))
		for i, t := range sorted {
			list[i] = t
		}
		md[TagsKey] = list
	}
	return md
}

// sortEndpoints orders endpoints by priority, locality, address and port.
func sortEndpoints(eps []sdk.Endpoint) {
	slices.SortStableFunc(eps, func(a, b sdk.Endpoint) int {
		return cmp.Or(
			cmp.Compare(a.Priority, b.Priority),
			cmp.Compare(a.Locality.Region, b.Locality.Region),
			cmp.Compare(a.Locality.Zone, b.Locality.Zone),
			cmp.Compare(a.Locality.SubZone, b.Locality.SubZone),
			cmp.Compare(a.Address, b.Address),
			cmp.Compare(a.Port, b.Port),
		)
	})
}

// mergeEndpoints joins the endpoints of a service's datacenters into one
// sorted list in which no two share an address and port (the first, in
// failover order, wins).
func mergeEndpoints(parts [][]sdk.Endpoint) []sdk.Endpoint {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n == 0 {
		return nil
	}
	all := make([]sdk.Endpoint, 0, n)
	for _, p := range parts {
		all = append(all, p...)
	}
	sortEndpoints(all)
	type hostPort struct {
		addr string
		port uint32
	}
	seen := make(map[hostPort]bool, len(all))
	out := all[:0]
	for _, ep := range all {
		k := hostPort{ep.Address, ep.Port}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, ep)
	}
	return out
}

// hasTags reports whether the union of a service's tags, as the catalog
// lists it, holds every wanted tag (case-insensitively, as Consul's tag
// filter compares). A service failing this has no instance carrying them
// all, so it is not queried at all.
func hasTags(have, want []string) bool {
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h string) bool { return strings.EqualFold(h, w) }) {
			return false
		}
	}
	return true
}
