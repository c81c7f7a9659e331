package aggregator

import "github.com/xdsbridge/xdsbridge/sdk"

// Cluster is one merged cluster: the union of what every source says about
// it. Values handed out by the aggregator are immutable; never modify one.
type Cluster struct {
	Name string
	// Overlay is the serialized envoy.config.cluster.v3.Cluster overlay in
	// force (from the first source by name that sets one), or nil.
	Overlay []byte
	// Endpoints are sorted by priority, locality, address and port, with no
	// two sharing an address and port.
	Endpoints []Endpoint
	// Sources are the names of the sources that provide the cluster, sorted.
	Sources []string
}

// Endpoint is an endpoint and the sources that provide it.
type Endpoint struct {
	sdk.Endpoint
	// Sources are sorted; the first one's attributes (weight, health, …) are
	// the ones served.
	Sources []string
}

// Resource is an Envoy-native resource and the source that provides it.
type Resource struct {
	sdk.Resource
	Sources []string
}

// Change is what one build of the aggregator changed. A Change is complete
// for the names it mentions: each Cluster and Resource replaces the previous
// value of that name.
type Change struct {
	Clusters         []*Cluster
	RemovedClusters  []string
	Resources        []*Resource
	RemovedResources []sdk.ResourceRef
}

// Empty reports whether c changes nothing.
func (c *Change) Empty() bool {
	return len(c.Clusters) == 0 && len(c.RemovedClusters) == 0 &&
		len(c.Resources) == 0 && len(c.RemovedResources) == 0
}
