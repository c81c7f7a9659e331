package aggregator

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// merge unions the endpoints of every source's version of a cluster.
// Contributions come sorted by source name; when two sources list the same
// address and port, the first one's attributes are served and both are
// recorded as its sources. The overlay comes from the first source that sets
// one; a different overlay from a later source is a conflict.
func merge(name string, contribs []contribution) (*Cluster, []rejection) {
	out := &Cluster{Name: name}
	var conflicts []rejection
	overlayFrom := ""
	type key struct {
		addr string
		port uint32
	}
	index := map[key]int{}
	for _, c := range contribs {
		out.Sources = append(out.Sources, c.source)
		if len(c.cluster.Overlay) > 0 {
			switch {
			case out.Overlay == nil:
				out.Overlay, overlayFrom = c.cluster.Overlay, c.source
			case string(out.Overlay) != string(c.cluster.Overlay):
				conflicts = append(conflicts, rejection{ReasonConflict, fmt.Sprintf("cluster %q: sources %q and %q set different cluster settings; serving %q's", name, overlayFrom, c.source, overlayFrom)})
			}
		}
		for _, e := range c.cluster.Endpoints {
			k := key{e.Address, e.Port}
			if i, ok := index[k]; ok {
				out.Endpoints[i].Sources = append(out.Endpoints[i].Sources, c.source)
				continue
			}
			index[k] = len(out.Endpoints)
			out.Endpoints = append(out.Endpoints, Endpoint{Endpoint: e, Sources: []string{c.source}})
		}
	}
	sortEndpoints(out.Endpoints)
	return out, conflicts
}

// sortEndpoints sorts by priority, locality, address (as numbers) and port,
// parsing each address once rather than on every comparison.
func sortEndpoints(eps []Endpoint) {
	type keyed struct {
		addr netip.Addr
		ep   Endpoint
	}
	ks := make([]keyed, len(eps))
	for i, e := range eps {
		a, _ := netip.ParseAddr(e.Address) // validated on the way in
		ks[i] = keyed{a, e}
	}
	slices.SortFunc(ks, func(x, y keyed) int {
		return cmp.Or(
			cmp.Compare(x.ep.Priority, y.ep.Priority),
			cmp.Compare(x.ep.Locality.Region, y.ep.Locality.Region),
			cmp.Compare(x.ep.Locality.Zone, y.ep.Locality.Zone),
			cmp.Compare(x.ep.Locality.SubZone, y.ep.Locality.SubZone),
			x.addr.Compare(y.addr),
			cmp.Compare(x.ep.Port, y.ep.Port),
		)
	})
	for i := range ks {
		eps[i] = ks[i].ep
	}
}

func mergedEqual(a, b *Cluster) bool {
	if a.Name != b.Name || string(a.Overlay) != string(b.Overlay) || !slices.Equal(a.Sources, b.Sources) || len(a.Endpoints) != len(b.Endpoints) {
		return false
	}
	for i := range a.Endpoints {
		x, y := &a.Endpoints[i], &b.Endpoints[i]
		if !slices.Equal(x.Sources, y.Sources) || !x.Endpoint.Equal(&y.Endpoint) {
			return false
		}
	}
	return true
}
