package translate

import (
	"fmt"
	"math"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// lbMetadataKey is the filter_metadata key that Envoy's load balancers
// (subset load balancing, ring hash's hash_key) and gRPC read.
const lbMetadataKey = "envoy.lb"

// lbMetadata returns md under filter_metadata["envoy.lb"], or nil when md is
// empty.
func lbMetadata(md map[string]any) *corev3.Metadata {
	if len(md) == 0 {
		return nil
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{lbMetadataKey: toStruct(md)}}
}

// toStruct converts sdk.Endpoint.Metadata to a Struct.
//
// The SDK promises JSON-like values (string, float64, bool, nil, []any,
// map[string]any); integers of any size, []string and map[string]string are
// accepted as well. Anything else cannot fail the translation, which has no
// error to return (the aggregator validates metadata): such a value is
// served as its fmt %v text, and a non-finite number as null, since neither
// Envoy's JSON nor gRPC's can carry one.
func toStruct(md map[string]any) *structpb.Struct {
	fields := make(map[string]*structpb.Value, len(md))
	for k, v := range md {
		fields[k] = toValue(v)
	}
	return &structpb.Struct{Fields: fields}
}

func toValue(v any) *structpb.Value {
	switch v := v.(type) {
	case nil:
		return structpb.NewNullValue()
	case bool:
		return structpb.NewBoolValue(v)
	case string:
		return structpb.NewStringValue(v)
	case float64:
		return number(v)
	case float32:
		return number(float64(v))
	case int:
		return structpb.NewNumberValue(float64(v))
	case int8:
		return structpb.NewNumberValue(float64(v))
	case int16:
		return structpb.NewNumberValue(float64(v))
	case int32:
		return structpb.NewNumberValue(float64(v))
	case int64:
		return structpb.NewNumberValue(float64(v))
	case uint:
		return structpb.NewNumberValue(float64(v))
	case uint8:
		return structpb.NewNumberValue(float64(v))
	case uint16:
		return structpb.NewNumberValue(float64(v))
	case uint32:
		return structpb.NewNumberValue(float64(v))
	case uint64:
		return structpb.NewNumberValue(float64(v))
	case []any:
		vals := make([]*structpb.Value, len(v))
		for i, e := range v {
			vals[i] = toValue(e)
		}
		return structpb.NewListValue(&structpb.ListValue{Values: vals})
	case []string:
		vals := make([]*structpb.Value, len(v))
		for i, e := range v {
			vals[i] = structpb.NewStringValue(e)
		}
		return structpb.NewListValue(&structpb.ListValue{Values: vals})
	case map[string]any:
		return structpb.NewStructValue(toStruct(v))
	case map[string]string:
		fields := make(map[string]*structpb.Value, len(v))
		for k, e := range v {
			fields[k] = structpb.NewStringValue(e)
		}
		return structpb.NewStructValue(&structpb.Struct{Fields: fields})
	}
	// fmt prints maps with sorted keys, so this text is deterministic too.
	return structpb.NewStringValue(fmt.Sprintf("%v", v))
}

func number(f float64) *structpb.Value {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return structpb.NewNullValue()
	}
	return structpb.NewNumberValue(f)
}
