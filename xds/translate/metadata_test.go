package translate_test

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/xds/translate"
)

// TestMetadataValues covers the Go values metadata may hold beyond what
// YAML decoding produces (the golden file metadata.yaml covers those).
func TestMetadataValues(t *testing.T) {
	type point struct{ X, Y int }
	tests := []struct {
		name string
		in   any
		want *structpb.Value
	}{
		{"int64", int64(-3), structpb.NewNumberValue(-3)},
		{"uint32", uint32(7), structpb.NewNumberValue(7)},
		{"float32", float32(0.5), structpb.NewNumberValue(0.5)},
		{"NaN", math.NaN(), structpb.NewNullValue()},
		{"Inf", math.Inf(1), structpb.NewNullValue()},
		{"strings", []string{"a", "b"}, structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue("a"), structpb.NewStringValue("b")}})},
		{"string map", map[string]string{"k": "v"}, structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"k": structpb.NewStringValue("v")}})},
		{"nested", []any{map[string]any{"n": nil}}, structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{
			structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"n": structpb.NewNullValue()}}),
		}})},
		{"struct: its text", point{1, 2}, structpb.NewStringValue("{1 2}")},
		{"duration: its text", 1500 * time.Millisecond, structpb.NewStringValue("1.5s")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cla := translate.LoadAssignment(&aggregator.Cluster{Name: "a", Endpoints: []aggregator.Endpoint{
				{Endpoint: sdk.Endpoint{Address: "10.0.0.1", Port: 80, Metadata: map[string]any{"k": tt.in}}},
			}})
			md := cla.GetEndpoints()[0].GetLbEndpoints()[0].GetMetadata().GetFilterMetadata()["envoy.lb"]
			if diff := cmp.Diff(tt.want, md.GetFields()["k"], protocmp.Transform()); diff != "" {
				t.Errorf("metadata (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMetadataOmittedWhenEmpty(t *testing.T) {
	for _, md := range []map[string]any{nil, {}} {
		cla := translate.LoadAssignment(&aggregator.Cluster{Name: "a", Endpoints: []aggregator.Endpoint{
			{Endpoint: sdk.Endpoint{Address: "10.0.0.1", Port: 80, Metadata: md}},
		}})
		if got := cla.GetEndpoints()[0].GetLbEndpoints()[0].GetMetadata(); got != nil {
			t.Errorf("metadata %v: got %v, want none", md, got)
		}
	}
}
