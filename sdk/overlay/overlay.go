// Package overlay reads, checks and applies cluster overlays: the Envoy
// Cluster fields a plugin sets on top of the EDS cluster xdsbridge generates
// for each of its clusters (connect_timeout, lb_policy, circuit_breakers,
// upstream TLS, …).
//
// A plugin calls Parse on the fields of its configuration and puts the
// bytes in sdk.Cluster.Overlay; the aggregator checks them with Validate
// and the translator builds the served cluster with Cluster. All three
// apply the same rules, so an overlay a plugin accepts is one that is
// served. The package depends on Envoy's cluster protos, not on the
// aggregator, the translator or the xDS server.
package overlay

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"

	// The typed configs an overlay most often carries in its Any fields,
	// registered so that Parse resolves their "@type":
	// typed_extension_protocol_options (HTTP/2 to the upstream) and
	// transport_socket (upstream TLS).
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/xdsbridge/xdsbridge/internal/suggest"
)

// DefaultConnectTimeout is the connect_timeout of a cluster whose overlay
// does not set one.
const DefaultConnectTimeout = 5 * time.Second

// Cluster builds the EDS cluster called name: type EDS,
// eds_cluster_config{service_name: name, eds_config: eds} and
// connect_timeout DefaultConnectTimeout, then overlay (a serialized
// clusterv3.Cluster, or nil) on top. A nil eds means {resource_api_version:
// V3, ads: {}}.
//
// A top-level field the overlay sets replaces the generated one as a whole
// before the two are merged with proto.Merge: connect_timeout 0.25s gives
// 0.25s, where merging the two Durations field by field would give 5.25s.
//
// It returns an error if the overlay does not parse, sets a field it may
// not (name, type or cluster_type, eds_cluster_config, load_assignment), or
// makes the cluster invalid by Envoy's rules (a negative connect_timeout,
// say). The error does not name the cluster: the caller does.
func Cluster(name string, overlay []byte, eds *corev3.ConfigSource) (*clusterv3.Cluster, error) {
	if eds == nil {
		eds = &corev3.ConfigSource{
			ResourceApiVersion:    corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		}
	}
	return buildCluster(name, overlay, eds)
}

// Validate is what plugins and the aggregator call to check an overlay
// early. It applies the same rules as Cluster.
func Validate(overlay []byte) error {
	_, err := Cluster("overlay", overlay, nil)
	return err
}

// Parse turns the optional Envoy Cluster fields of a plugin's
// configuration, written in YAML with proto3 JSON names (connect_timeout:
// 0.25s, lb_policy: ROUND_ROBIN, circuit_breakers: {…}), into an overlay for
// Cluster: deterministic proto bytes, or nil when fields is empty or sets
// only default values. Both field names (connect_timeout) and JSON names
// (connectTimeout) are accepted. An Any field ("@type") may hold HTTP
// protocol options or an upstream TLS context. The key "route" (RouteKey)
// holds the settings of the cluster's generated gRPC route (see
// GRPCListener): max_stream_duration, retry_policy and hash_policy, as
// gRPC's xDS client reads them.
//
// Unknown fields are errors that give the field's path
// (circuit_breakers.thresholds[0].max_conections, with a suggestion); so
// are the fields Cluster does not allow and anything Validate
// rejects. Errors start with "overlay: "; the caller adds the cluster.
func Parse(fields map[string]any) ([]byte, error) {
	fields, route, err := splitRoute(fields)
	if err != nil {
		return nil, err
	}
	if len(fields) == 0 && route == nil {
		return nil, nil
	}
	v, err := jsonValue(fields, "")
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	md := (*clusterv3.Cluster)(nil).ProtoReflect().Descriptor()
	var problems []string
	for _, k := range sortedKeys(fields) {
		if fd := fieldByName(md, k); fd != nil && forbidden(fd) {
			problems = append(problems, forbiddenMessage(fd))
		}
	}
	problems = append(problems, unknownFields(md, v, "")...)
	if len(problems) > 0 {
		return nil, fmt.Errorf("overlay: %s", strings.Join(problems, "; "))
	}

	j, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	ov := new(clusterv3.Cluster)
	if err := protojson.Unmarshal(j, ov); err != nil {
		return nil, fmt.Errorf("overlay: %s", locateError(v.(map[string]any), err))
	}
	if err := withRoute(ov, route); err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ov)
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	if len(b) == 0 {
		return nil, nil // only default values: no overlay
	}
	if err := Validate(b); err != nil {
		return nil, err
	}
	return b, nil
}

// buildCluster builds the cluster called name, fetching its endpoints from
// eds, with overlay on top.
func buildCluster(name string, overlay []byte, eds *corev3.ConfigSource) (*clusterv3.Cluster, error) {
	cl := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			ServiceName: name,
			EdsConfig:   eds,
		},
		ConnectTimeout: durationpb.New(DefaultConnectTimeout),
	}
	if len(overlay) == 0 {
		if err := cl.GetEdsClusterConfig().ValidateAll(); err != nil {
			return nil, fmt.Errorf("eds_config: %w", err)
		}
		return cl, nil
	}

	ov := new(clusterv3.Cluster)
	if err := proto.Unmarshal(overlay, ov); err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	var problems []string
	ov.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if forbidden(fd) {
			problems = append(problems, forbiddenMessage(fd))
		}
		return true
	})
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, fmt.Errorf("overlay: %s", strings.Join(problems, "; "))
	}

	m := cl.ProtoReflect()
	ov.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		m.Clear(fd)
		return true
	})
	proto.Merge(cl, ov)
	if _, err := takeRoute(cl); err != nil {
		return nil, err
	}
	if err := cl.ValidateAll(); err != nil {
		return nil, fmt.Errorf("overlay makes an invalid cluster: %w", err)
	}
	return cl, nil
}

// forbidden reports whether an overlay may not set fd: the fields that make
// the cluster an EDS cluster served by xdsbridge.
func forbidden(fd protoreflect.FieldDescriptor) bool {
	switch fd.Name() {
	case "name", "type", "cluster_type", "eds_cluster_config", "load_assignment":
		return true
	}
	return false
}

func forbiddenMessage(fd protoreflect.FieldDescriptor) string {
	return fmt.Sprintf("field %q may not be set: xdsbridge generates it", fd.Name())
}

// fieldByName finds a field by the names protojson accepts.
func fieldByName(md protoreflect.MessageDescriptor, k string) protoreflect.FieldDescriptor {
	fields := md.Fields()
	if fd := fields.ByJSONName(k); fd != nil {
		return fd
	}
	return fields.ByName(protoreflect.Name(k))
}

// unknownFields walks v, a JSON-like value for a message md, and describes
// every key md has no field for, with its path. protojson would report only
// the first, without a path.
func unknownFields(md protoreflect.MessageDescriptor, v any, path string) []string {
	if md.ParentFile().Package() == "google.protobuf" {
		return nil // well-known types have their own JSON forms
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil // protojson reports the wrong type
	}
	var out []string
	for _, k := range sortedKeys(obj) {
		p := k
		if path != "" {
			p = path + "." + k
		}
		fd := fieldByName(md, k)
		switch {
		case fd == nil:
			out = append(out, fmt.Sprintf("unknown field %q%s", p, fieldHint(md, k)))
		case fd.IsMap():
			vd := fd.MapValue()
			entries, ok := obj[k].(map[string]any)
			if vd.Message() == nil || !ok {
				continue
			}
			for _, ek := range sortedKeys(entries) {
				out = append(out, unknownFields(vd.Message(), entries[ek], fmt.Sprintf("%s[%q]", p, ek))...)
			}
		case fd.Message() == nil:
		case fd.IsList():
			list, _ := obj[k].([]any)
			for i, e := range list {
				out = append(out, unknownFields(fd.Message(), e, fmt.Sprintf("%s[%d]", p, i))...)
			}
		default:
			out = append(out, unknownFields(fd.Message(), obj[k], p)...)
		}
	}
	return out
}

// fieldHint names the field of md closest to k, if one is close.
func fieldHint(md protoreflect.MessageDescriptor, k string) string {
	fields := md.Fields()
	names := make([]string, fields.Len())
	for i := range names {
		names[i] = string(fields.Get(i).Name())
	}
	return suggest.HintWithin(k, names, 3)
}

// jsonValue converts a value decoded from YAML into one encoding/json
// accepts: mappings with non-string keys (which YAML allows) are errors.
func jsonValue(v any, path string) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			c, err := jsonValue(e, joinPath(path, k))
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("%s: key %v is not a string", displayPath(path), k)
			}
			c, err := jsonValue(e, joinPath(path, ks))
			if err != nil {
				return nil, err
			}
			out[ks] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			c, err := jsonValue(e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	}
	return v, nil
}

func joinPath(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func displayPath(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// locateError puts the name of the top-level field at fault in front of
// err, protojson's error for the whole of obj: protojson names the field
// for some errors but not for others (a number where a string should be).
func locateError(obj map[string]any, err error) string {
	for _, k := range sortedKeys(obj) {
		j, jerr := json.Marshal(map[string]any{k: obj[k]})
		if jerr != nil {
			continue
		}
		if ferr := protojson.Unmarshal(j, new(clusterv3.Cluster)); ferr != nil {
			return k + ": " + protoErrorText(ferr)
		}
	}
	return protoErrorText(err)
}

// protoPrefix and protoLine match what protobuf-go puts in its error texts
// beside the message: the "proto:" prefix, followed by a space or a no-break
// space (chosen at random, to stop callers from matching on the text), and
// positions in the JSON, of no use here since the JSON was generated from
// YAML.
var (
	protoPrefix = regexp.MustCompile(`^proto:[\s\x{00a0}]*(\(line \d+:\d+\):[\s\x{00a0}]*)?`)
	protoLine   = regexp.MustCompile(`[\s\x{00a0}]*\(line \d+:\d+\)`)
)

func protoErrorText(err error) string {
	return protoLine.ReplaceAllString(protoPrefix.ReplaceAllString(err.Error(), ""), "")
}
