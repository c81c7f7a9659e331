package sdk

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// NewResource serializes an Envoy-native resource. The resource must have a
// non-empty string field called name, as every xDS resource does.
func NewResource(m proto.Message) (Resource, error) {
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("name")
	if fd == nil || fd.Kind() != protoreflect.StringKind {
		return Resource{}, fmt.Errorf("sdk: %s has no name field", r.Descriptor().FullName())
	}
	name := r.Get(fd).String()
	if name == "" {
		return Resource{}, fmt.Errorf("sdk: %s has an empty name", r.Descriptor().FullName())
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return Resource{}, fmt.Errorf("sdk: marshal %s %q: %w", r.Descriptor().FullName(), name, err)
	}
	return Resource{
		TypeURL: "type.googleapis.com/" + string(r.Descriptor().FullName()),
		Name:    name,
		Value:   b,
	}, nil
}
