package overlay_test

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/xdsbridge/xdsbridge/sdk/overlay"
)

func TestParse(t *testing.T) {
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
			got, err := overlay.Parse(tt.fields)
			checkErr(t, err, tt.wantErr)
			if err != nil {
				return
			}
			if tt.want == nil {
				if got != nil {
					t.Fatalf("Parse = %x, want nil", got)
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

// TestParseTypedConfig checks that the typed configs an overlay
// usually holds resolve without the caller importing them.
func TestParseTypedConfig(t *testing.T) {
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
	b, err := overlay.Parse(fields)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		t.Fatal("empty overlay")
	}
}

// TestParseDeterministic: map iteration order must not reach the
// bytes.
func TestParseDeterministic(t *testing.T) {
	fields := map[string]any{
		"connect_timeout": "1s",
		"metadata": map[string]any{"filter_metadata": map[string]any{
			"a": map[string]any{"x": 1, "y": 2, "z": 3},
			"b": map[string]any{"x": 1, "y": 2, "z": 3},
			"c": map[string]any{"x": 1, "y": 2, "z": 3},
		}},
	}
	want, err := overlay.Parse(fields)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		got, err := overlay.Parse(fields)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatal("Parse is not deterministic")
		}
	}
}

// TestClusterAndValidate: Cluster builds the EDS cluster with the overlay
// on top, and Validate accepts exactly the overlays Cluster accepts.
func TestClusterAndValidate(t *testing.T) {
	marshal := func(c *clusterv3.Cluster) []byte {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name    string
		overlay []byte
		wantErr string
	}{
		{name: "none"},
		{name: "lb_policy", overlay: marshal(&clusterv3.Cluster{LbPolicy: clusterv3.Cluster_RING_HASH})},
		{name: "forbidden", overlay: marshal(&clusterv3.Cluster{Name: "x"}), wantErr: `overlay: field "name" may not be set`},
		{name: "invalid", overlay: marshal(&clusterv3.Cluster{ConnectTimeout: durationpb.New(-time.Second)}), wantErr: "overlay makes an invalid cluster"},
		{name: "garbage", overlay: []byte{0xff}, wantErr: "overlay: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, err := overlay.Cluster("web", tt.overlay, nil)
			checkErr(t, err, tt.wantErr)
			checkErr(t, overlay.Validate(tt.overlay), tt.wantErr)
			if err != nil {
				return
			}
			if cl.GetName() != "web" || cl.GetType() != clusterv3.Cluster_EDS || cl.GetEdsClusterConfig().GetServiceName() != "web" ||
				cl.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil || cl.GetConnectTimeout().AsDuration() != overlay.DefaultConnectTimeout {
				t.Errorf("Cluster = %v; want the EDS cluster web over ADS with the default connect_timeout", cl)
			}
		})
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
