package overlay

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// RouteKey is the overlay key of a cluster's route settings, and the key
// of Cluster.metadata.typed_filter_metadata under which an overlay carries
// them (as an envoy.config.route.v3.RouteAction) from the plugin to the
// translator. Cluster removes it from the served cluster; the translator's
// GRPCListener
// puts the settings on the cluster's generated route.
const RouteKey = "route"

// routeMetadataKey is RouteKey's typed_filter_metadata key.
const routeMetadataKey = "xdsbridge.route"

// routeFields are the RouteAction fields an overlay's route may set: those
// gRPC's xDS client honours. A call's timeout is max_stream_duration
// (gRPC ignores RouteAction.timeout).
var routeFields = []string{"max_stream_duration", "retry_policy", "hash_policy"}

// grpcRetryOn are the retry_on conditions gRPC's xDS client knows.
var grpcRetryOn = []string{"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}

// splitRoute takes the route settings out of an overlay's fields: fields
// without RouteKey, and the parsed RouteAction (nil for none). Errors start
// with "overlay: route".
func splitRoute(fields map[string]any) (map[string]any, *routev3.RouteAction, error) {
	raw, ok := fields[RouteKey]
	if !ok {
		return fields, nil, nil
	}
	rest := make(map[string]any, len(fields)-1)
	for k, v := range fields {
		if k != RouteKey {
			rest[k] = v
		}
	}
	ra, err := parseRoute(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("overlay: %s: %w", RouteKey, err)
	}
	return rest, ra, nil
}

func parseRoute(raw any) (*routev3.RouteAction, error) {
	v, err := jsonValue(raw, "")
	if err != nil {
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("expected a mapping of %s", strings.Join(routeFields, ", "))
	}
	md := (*routev3.RouteAction)(nil).ProtoReflect().Descriptor()
	var problems []string
	for _, k := range sortedKeys(obj) {
		fd := fieldByName(md, k)
		if fd == nil || !slices.Contains(routeFields, string(fd.Name())) {
			problems = append(problems, fmt.Sprintf("field %q may not be set: a route sets only %s", k, strings.Join(routeFields, ", ")))
		}
	}
	problems = append(problems, unknownFields(md, v, "")...)
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	if len(obj) == 0 {
		return nil, nil
	}
	j, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	ra := new(routev3.RouteAction)
	if err := protojson.Unmarshal(j, ra); err != nil {
		return nil, errors.New(protoErrorText(err))
	}
	if err := validateRoute(ra); err != nil {
		return nil, err
	}
	return ra, nil
}

// validateRoute applies Envoy's rules and those of gRPC's xDS client,
// which rejects a whole RouteConfiguration over one bad retry policy and
// ignores what it does not know: a setting gRPC would ignore is an error
// here, so that what is written is what clients do.
func validateRoute(ra *routev3.RouteAction) error {
	var problems []string
	ra.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !slices.Contains(routeFields, string(fd.Name())) {
			problems = append(problems, fmt.Sprintf("field %q may not be set: a route sets only %s", fd.Name(), strings.Join(routeFields, ", ")))
		}
		return true
	})
	if rp := ra.GetRetryPolicy(); rp != nil {
		for _, s := range strings.Split(rp.GetRetryOn(), ",") {
			if rp.GetRetryOn() == "" {
				problems = append(problems, fmt.Sprintf("retry_policy.retry_on: missing: without conditions gRPC never retries (name some of %s)", strings.Join(grpcRetryOn, ", ")))
			} else if s = strings.TrimSpace(s); !slices.Contains(grpcRetryOn, s) {
				problems = append(problems, fmt.Sprintf("retry_policy.retry_on: %q is not a condition gRPC retries on (%s)", s, strings.Join(grpcRetryOn, ", ")))
			}
		}
		if n := rp.GetNumRetries(); n != nil && n.GetValue() < 1 {
			problems = append(problems, "retry_policy.num_retries: must be at least 1")
		}
		if b := rp.GetRetryBackOff(); b != nil && b.GetMaxInterval() != nil && b.GetMaxInterval().AsDuration() <= 0 {
			problems = append(problems, "retry_policy.retry_back_off.max_interval: must be positive")
		}
	}
	for i, hp := range ra.GetHashPolicy() {
		switch {
		case hp.GetHeader() != nil:
		case hp.GetFilterState() != nil && hp.GetFilterState().GetKey() == "io.grpc.channel_id":
		default:
			problems = append(problems, fmt.Sprintf("hash_policy[%d]: gRPC hashes only on a header or filter_state {key: io.grpc.channel_id}", i))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	// Envoy's rules need a cluster; any name will do.
	check := proto.Clone(ra).(*routev3.RouteAction)
	check.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: "c"}
	if err := check.ValidateAll(); err != nil {
		return err
	}
	return nil
}

// withRoute puts ra (when set) into ov, the overlay, for takeRoute.
func withRoute(ov *clusterv3.Cluster, ra *routev3.RouteAction) error {
	if ra == nil {
		return nil
	}
	a, err := anypb.New(ra)
	if err != nil {
		return err
	}
	if ov.Metadata == nil {
		ov.Metadata = new(corev3.Metadata)
	}
	if ov.Metadata.TypedFilterMetadata == nil {
		ov.Metadata.TypedFilterMetadata = map[string]*anypb.Any{}
	}
	ov.Metadata.TypedFilterMetadata[routeMetadataKey] = a
	return nil
}

// takeRoute removes the route settings from cl, a cluster with its overlay
// merged, and returns them validated (nil for none).
func takeRoute(cl *clusterv3.Cluster) (*routev3.RouteAction, error) {
	a := cl.GetMetadata().GetTypedFilterMetadata()[routeMetadataKey]
	if a == nil {
		return nil, nil
	}
	delete(cl.Metadata.TypedFilterMetadata, routeMetadataKey)
	if len(cl.Metadata.TypedFilterMetadata) == 0 {
		cl.Metadata.TypedFilterMetadata = nil
	}
	if proto.Size(cl.Metadata) == 0 {
		cl.Metadata = nil
	}
	ra := new(routev3.RouteAction)
	if err := a.UnmarshalTo(ra); err != nil {
		return nil, fmt.Errorf("overlay: %s: %w", RouteKey, err)
	}
	if err := validateRoute(ra); err != nil {
		return nil, fmt.Errorf("overlay: %s: %w", RouteKey, err)
	}
	return ra, nil
}

// RouteOf returns the route settings an overlay carries (nil for none).
func RouteOf(overlay []byte) (*routev3.RouteAction, error) {
	if len(overlay) == 0 {
		return nil, nil
	}
	ov := new(clusterv3.Cluster)
	if err := proto.Unmarshal(overlay, ov); err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	return takeRoute(ov)
}
