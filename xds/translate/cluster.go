package translate

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/sdk/overlay"
)

// Cluster builds the EDS cluster for c: name c.Name, type EDS,
// eds_cluster_config{service_name: c.Name, eds_config: {resource_api_version:
// V3, ads: {}}} and connect_timeout overlay.DefaultConnectTimeout, then the
// overlay c.Overlay (a serialized clusterv3.Cluster) on top, as
// overlay.Cluster does.
//
// The eds_config is ads, not self: Envoy does not implement
// ConfigSource.self (the field is marked not-implemented, and Envoy's
// subscription factory fails such a cluster with "Missing config source
// specifier"), while both Envoy over ADS and gRPC's xDS client (which
// accepts ads or self) fetch the endpoints on the stream the cluster came
// on. A client that fetches clusters without ADS (CDS over REST, say) needs
// an eds_config naming one of its own bootstrap clusters: see
// ClusterWithEDSConfig.
//
// It returns an error naming the cluster if the overlay does not parse, sets
// a field it may not (name, type or cluster_type, eds_cluster_config,
// load_assignment), or makes the cluster invalid by Envoy's rules (a
// negative connect_timeout, say).
func Cluster(c *aggregator.Cluster) (*clusterv3.Cluster, error) {
	return ClusterWithEDSConfig(c, nil)
}

// ClusterWithEDSConfig is Cluster with eds (copied) as the eds_config, for
// clients that do not use ADS: for CDS over REST, an api_config_source of
// api_type REST naming the client's bootstrap cluster for xdsbridge's REST
// address (xds_rest in examples/envoy/rest.yaml). A nil eds means ads, as
// in Cluster.
func ClusterWithEDSConfig(c *aggregator.Cluster, eds *corev3.ConfigSource) (*clusterv3.Cluster, error) {
	if eds != nil {
		eds = proto.Clone(eds).(*corev3.ConfigSource)
	}
	cl, err := overlay.Cluster(c.Name, c.Overlay, eds)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %w", c.Name, err)
	}
	return cl, nil
}
