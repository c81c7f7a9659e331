package translate_test

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/sdk/overlay"
	"github.com/xdsbridge/xdsbridge/xds/translate"
)

func edsCluster(name string, timeout time.Duration) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			ServiceName: name,
			EdsConfig: &corev3.ConfigSource{
				ResourceApiVersion:    corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
			},
		},
		ConnectTimeout: durationpb.New(timeout),
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCluster(t *testing.T) {
	withTimeout := edsCluster("a", 250*time.Millisecond)
	leastRequest := edsCluster("a", 5*time.Second)
	leastRequest.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	leastRequest.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{
		{MaxConnections: wrapperspb.UInt32(10)},
	}}

	tests := []struct {
		name    string
		overlay proto.Message // marshalled as it is; nil for none
		want    *clusterv3.Cluster
		wantErr string
	}{
		{name: "no overlay", want: edsCluster("a", 5*time.Second)},
		{
			name:    "connect_timeout replaces the default",
			overlay: &clusterv3.Cluster{ConnectTimeout: durationpb.New(250 * time.Millisecond)},
			want:    withTimeout,
		},
		{
			name: "lb_policy and circuit breakers",
			overlay: &clusterv3.Cluster{
				LbPolicy: clusterv3.Cluster_LEAST_REQUEST,
				CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{
					{MaxConnections: wrapperspb.UInt32(10)},
				}},
			},
			want: leastRequest,
		},
		{name: "name", overlay: &clusterv3.Cluster{Name: "b"}, wantErr: `cluster "a": overlay: field "name" may not be set`},
		{
			name:    "type",
			overlay: &clusterv3.Cluster{ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}},
			wantErr: `cluster "a": overlay: field "type" may not be set`,
		},
		{
			// EDS is the zero value: presence, not value, is what counts.
			name:    "type EDS",
			overlay: &clusterv3.Cluster{ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}},
			wantErr: `field "type" may not be set`,
		},
		{
			name:    "cluster_type",
			overlay: &clusterv3.Cluster{ClusterDiscoveryType: &clusterv3.Cluster_ClusterType{ClusterType: &clusterv3.Cluster_CustomClusterType{Name: "x"}}},
			wantErr: `field "cluster_type" may not be set`,
		},
		{
			name:    "eds_cluster_config",
			overlay: &clusterv3.Cluster{EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{}},
			wantErr: `field "eds_cluster_config" may not be set`,
		},
		{
			name:    "load_assignment",
			overlay: &clusterv3.Cluster{LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "a"}},
			wantErr: `field "load_assignment" may not be set`,
		},
		{
			name:    "invalid result",
			overlay: &clusterv3.Cluster{ConnectTimeout: durationpb.New(-time.Second)},
			wantErr: `cluster "a": overlay makes an invalid cluster: invalid Cluster.ConnectTimeout`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &aggregator.Cluster{Name: "a"}
			if tt.overlay != nil {
				c.Overlay = mustMarshal(t, tt.overlay)
			}
			got, err := translate.Cluster(c)
			checkErr(t, err, tt.wantErr)
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("Cluster (-want +got):\n%s", diff)
			}
			// overlay.Validate applies the same rules.
			err = overlay.Validate(c.Overlay)
			checkErr(t, err, strings.TrimPrefix(tt.wantErr, `cluster "a": `))
		})
	}
}

func TestClusterWithEDSConfig(t *testing.T) {
	rest := &corev3.ConfigSource{
		ResourceApiVersion: corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{
			ApiType:             corev3.ApiConfigSource_REST,
			TransportApiVersion: corev3.ApiVersion_V3,
			ClusterNames:        []string{"xds_rest"},
			RefreshDelay:        durationpb.New(time.Second),
		}},
	}
	overlay := mustMarshal(t, &clusterv3.Cluster{LbPolicy: clusterv3.Cluster_RING_HASH})
	got, err := translate.ClusterWithEDSConfig(&aggregator.Cluster{Name: "a", Overlay: overlay}, rest)
	if err != nil {
		t.Fatal(err)
	}
	want := edsCluster("a", 5*time.Second)
	want.EdsClusterConfig.EdsConfig = rest
	want.LbPolicy = clusterv3.Cluster_RING_HASH
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("ClusterWithEDSConfig (-want +got):\n%s", diff)
	}
	if got.EdsClusterConfig.EdsConfig == rest {
		t.Error("ClusterWithEDSConfig keeps the caller's ConfigSource: it must copy it")
	}

	// nil is ads, as Cluster.
	plain, err := translate.ClusterWithEDSConfig(&aggregator.Cluster{Name: "a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(edsCluster("a", 5*time.Second), plain, protocmp.Transform()); diff != "" {
		t.Errorf("ClusterWithEDSConfig(nil) (-want +got):\n%s", diff)
	}

	// An invalid ConfigSource (no specifier) is an error naming the cluster.
	_, err = translate.ClusterWithEDSConfig(&aggregator.Cluster{Name: "a"}, &corev3.ConfigSource{})
	checkErr(t, err, `cluster "a": eds_config: `)
}

func TestClusterBadOverlayBytes(t *testing.T) {
	_, err := translate.Cluster(&aggregator.Cluster{Name: "a", Overlay: []byte{0xff, 0xff}})
	checkErr(t, err, `cluster "a": overlay: `)
	checkErr(t, overlay.Validate([]byte{0xff}), "overlay: ")
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
}
