package aggregator

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/xdsbridge/xdsbridge/sdk"
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
	slices.SortFunc(out.Endpoints, compareEndpoints)
	return out, conflicts
}

func compareEndpoints(x, y Endpoint) int {
	if c := cmp.Or(
		cmp.Compare(x.Priority, y.Priority),
		cmp.Compare(x.Locality.Region, y.Locality.Region),
		cmp.Compare(x.Locality.Zone, y.Locality.Zone),
		cmp.Compare(x.Locality.SubZone, y.Locality.SubZone),
	); c != 0 {
		return c
	}
	ax, _ := netip.ParseAddr(x.Address)
	ay, _ := netip.ParseAddr(y.Address)
	return cmp.Or(ax.Compare(ay), cmp.Compare(x.Port, y.Port))
}

func mergedEqual(a, b *Cluster) bool {
	if a.Name != b.Name || string(a.Overlay) != string(b.Overlay) || !slices.Equal(a.Sources, b.Sources) || len(a.Endpoints) != len(b.Endpoints) {
		return false
	}
	for i := range a.Endpoints {
		if !slices.Equal(a.Endpoints[i].Sources, b.Endpoints[i].Sources) {
			return false
		}
	}
	x := &sdk.Cluster{Endpoints: endpointsOf(a)}
	y := &sdk.Cluster{Endpoints: endpointsOf(b)}
	return clusterEqual(x, y)
}

func endpointsOf(c *Cluster) []sdk.Endpoint {
	out := make([]sdk.Endpoint, len(c.Endpoints))
	for i, e := range c.Endpoints {
		out[i] = e.Endpoint
	}
	return out
}
