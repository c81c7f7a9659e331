package xds

import (
	"context"
	"fmt"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// restClusters serves REST clients clusters whose endpoints also come over
// REST. The clusters in the store fetch their endpoints over ADS, which a
// client polling REST does not have; for it, each EDS cluster's eds_config
// names the client's own bootstrap cluster for xdsbridge's REST address.
//
// The rewritten resources are kept for the last few response versions, so a
// fleet polling the same version rewrites them once.
type restClusters struct {
	cache.ConfigFetcher
	eds *corev3.ConfigSource

	mu   sync.Mutex
	memo map[string][]*anypb.Any // response version → rewritten clusters
	keys []string                // memo keys, oldest first
}

const restMemo = 8

// RESTRefreshDelay is how often REST clients are told to poll for endpoints.
const RESTRefreshDelay = time.Second

func newRESTClusters(inner cache.ConfigFetcher, restCluster string) *restClusters {
	return &restClusters{
		ConfigFetcher: inner,
		eds: &corev3.ConfigSource{
			ResourceApiVersion: corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{
				ApiType:             corev3.ApiConfigSource_REST,
				TransportApiVersion: corev3.ApiVersion_V3,
				ClusterNames:        []string{restCluster},
				RefreshDelay:        durationpb.New(RESTRefreshDelay),
			}},
		},
		memo: map[string][]*anypb.Any{},
	}
}

func (r *restClusters) Fetch(ctx context.Context, req *cache.Request) (cache.Response, error) {
	resp, err := r.ConfigFetcher.Fetch(ctx, req)
	if err != nil || req.GetTypeUrl() != resource.ClusterType {
		return resp, err
	}
	out, err := resp.GetDiscoveryResponse()
	if err != nil {
		return nil, err
	}
	anys, err := r.rewrite(out)
	if err != nil {
		return nil, err
	}
	return &cache.PassthroughResponse{
		Request: req,
		DiscoveryResponse: &discovery.DiscoveryResponse{
			VersionInfo: out.GetVersionInfo(),
			Resources:   anys,
			TypeUrl:     out.GetTypeUrl(),
		},
	}, nil
}

func (r *restClusters) rewrite(out *discovery.DiscoveryResponse) ([]*anypb.Any, error) {
	key := out.GetVersionInfo()
	r.mu.Lock()
	if anys, ok := r.memo[key]; ok {
		r.mu.Unlock()
		return anys, nil
	}
	r.mu.Unlock()

	anys := make([]*anypb.Any, len(out.GetResources()))
	for i, a := range out.GetResources() {
		var c clusterv3.Cluster
		if err := a.UnmarshalTo(&c); err != nil {
			return nil, fmt.Errorf("rest: decode cluster: %w", err)
		}
		if eds := c.GetEdsClusterConfig(); eds != nil && eds.GetEdsConfig().GetAds() != nil {
			eds.EdsConfig = r.eds
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&c)
		if err != nil {
			return nil, fmt.Errorf("rest: encode cluster %q: %w", c.GetName(), err)
		}
		anys[i] = &anypb.Any{TypeUrl: a.GetTypeUrl(), Value: b}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.memo[key]; !ok {
		r.memo[key] = anys
		r.keys = append(r.keys, key)
		if len(r.keys) > restMemo {
			delete(r.memo, r.keys[0])
			r.keys = r.keys[1:]
		}
	}
	return anys, nil
}
