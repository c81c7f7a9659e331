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
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/xdsbridge/xdsbridge/aggregator"
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
			// ValidateOverlay applies the same rules.
			err = translate.ValidateOverlay(c.Overlay)
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
	checkErr(t, translate.ValidateOverlay([]byte{0xff}), "overlay: ")
}

func TestParseOverlay(t *testing.T) {
	tests := []struct {
		name    string
		fields  map[string]any
		want    *clusterv3.Cluster // nil: no overlay
		wantErr string
	}{
		{name: "nil"},
		{name: "empty", fields: map[string]any{}},
		{name: "defaults only", fields: map[string]any{"lb_policy": "ROUND_ROBIN"}},
		{
			name:   "proto names",
			fields: map[string]any{"connect_timeout": "0.25s", "lb_policy": "LEAST_REQUEST"},
			want:   &clusterv3.Cluster{ConnectTimeout: durationpb.New(250 * time.Millisecond), LbPolicy: clusterv3.Cluster_LEAST_REQUEST},
		},
		{
			name:   "JSON names",
			fields: map[string]any{"connectTimeout": "2s", "lbPolicy": "RANDOM"},
			want:   &clusterv3.Cluster{ConnectTimeout: durationpb.New(2 * time.Second), LbPolicy: clusterv3.Cluster_RANDOM},
		},
		{
			name: "circuit breakers, as YAML decodes them",
			fields: map[string]any{"circuit_breakers": map[string]any{"thresholds": []any{
				map[any]any{"priority": "HIGH", "max_requests": 5},
			}}},
			want: &clusterv3.Cluster{CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{
				{Priority: corev3.RoutingPriority_HIGH, MaxRequests: wrapperspb.UInt32(5)},
			}}},
		},
		{
			name:    "unknown fields with paths",
			fields:  map[string]any{"conect_timeout": "1s", "circuit_breakers": map[string]any{"thresholds": []any{map[string]any{"max_request": 1}}}},
			wantErr: `overlay: unknown field "circuit_breakers.thresholds[0].max_request" (did you mean "max_requests"?); unknown field "conect_timeout" (did you mean "connect_timeout"?)`,
		},
		{
			// Struct values are free-form: no unknown fields there.
			name:   "free-form metadata",
			fields: map[string]any{"metadata": map[string]any{"filter_metadata": map[string]any{"a": map[string]any{"free": "form"}}}},
			want: &clusterv3.Cluster{Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
				"a": {Fields: map[string]*structpb.Value{"free": structpb.NewStringValue("form")}},
			}}},
		},
		{name: "name", fields: map[string]any{"name": ""}, wantErr: `overlay: field "name" may not be set`},
		{name: "type", fields: map[string]any{"type": "STATIC"}, wantErr: `overlay: field "type" may not be set`},
		{name: "cluster_type", fields: map[string]any{"clusterType": map[string]any{}}, wantErr: `overlay: field "cluster_type" may not be set`},
		{name: "eds_cluster_config", fields: map[string]any{"eds_cluster_config": map[string]any{}}, wantErr: `overlay: field "eds_cluster_config" may not be set`},
		{name: "load_assignment", fields: map[string]any{"loadAssignment": map[string]any{}}, wantErr: `overlay: field "load_assignment" may not be set`},
		{name: "bad enum", fields: map[string]any{"lb_policy": "FASTEST"}, wantErr: `overlay: lb_policy: invalid value for enum field lbPolicy: "FASTEST"`},
		{name: "bad duration", fields: map[string]any{"connect_timeout": 5}, wantErr: `overlay: connect_timeout: syntax error: unexpected token 5`},
		{name: "invalid result", fields: map[string]any{"connect_timeout": "0s"}, wantErr: `overlay makes an invalid cluster: invalid Cluster.ConnectTimeout: value must be greater than 0s`},
		{name: "non-string key", fields: map[string]any{"circuit_breakers": map[any]any{1: "x"}}, wantErr: `overlay: circuit_breakers: key 1 is not a string`},
		{
			name:    "unregistered type in Any",
			fields:  map[string]any{"transport_socket": map[string]any{"name": "x", "typed_config": map[string]any{"@type": "type.googleapis.com/no.such.Type"}}},
			wantErr: `overlay: transport_socket: unable to resolve "type.googleapis.com/no.such.Type"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := translate.ParseOverlay(tt.fields)
			checkErr(t, err, tt.wantErr)
			if err != nil {
				return
			}
			if tt.want == nil {
				if got != nil {
					t.Fatalf("ParseOverlay = %x, want nil", got)
				}
				return
			}
			var ov clusterv3.Cluster
			if err := proto.Unmarshal(got, &ov); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, &ov, protocmp.Transform()); diff != "" {
				t.Errorf("overlay (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseOverlayTypedConfig checks that the typed configs an overlay
// usually holds resolve without the caller importing them.
func TestParseOverlayTypedConfig(t *testing.T) {
	fields := map[string]any{
		"typed_extension_protocol_options": map[string]any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": map[string]any{
				"@type":                "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
				"explicit_http_config": map[string]any{"http2_protocol_options": map[string]any{}},
			},
		},
		"transport_socket": map[string]any{
			"name": "envoy.transport_sockets.tls",
			"typed_config": map[string]any{
				"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
				"sni":   "api.example.com",
			},
		},
	}
	b, err := translate.ParseOverlay(fields)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		t.Fatal("empty overlay")
	}
}

// TestParseOverlayDeterministic: map iteration order must not reach the
// bytes.
func TestParseOverlayDeterministic(t *testing.T) {
	fields := map[string]any{
		"connect_timeout": "1s",
		"metadata": map[string]any{"filter_metadata": map[string]any{
			"a": map[string]any{"x": 1, "y": 2, "z": 3},
			"b": map[string]any{"x": 1, "y": 2, "z": 3},
			"c": map[string]any{"x": 1, "y": 2, "z": 3},
		}},
	}
	want, err := translate.ParseOverlay(fields)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		got, err := translate.ParseOverlay(fields)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatal("ParseOverlay is not deterministic")
		}
	}
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
