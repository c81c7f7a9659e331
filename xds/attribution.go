package xds

import (
	"slices"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/xdsbridge/xdsbridge/xds/store"
)

// attribution finds the sources behind a response, for counting ACKs and
// NACKs by source. A state-of-the-world response carries its resources
// marshalled; their names are read from the bytes without decoding the
// resources, and the answer for the responses many clients share (every
// wildcard subscriber gets the same resource list) is cached.
type attribution struct {
	store *store.Store

	mu     sync.Mutex
	fields map[string]protowire.Number // type URL → the name field; 0: none
	cache  [attributionCache]attributed
	next   int
}

const attributionCache = 32

type attributed struct {
	typeURL   string
	resources []*anypb.Any
	names     []string
	sources   []string
}

func newAttribution(st *store.Store) *attribution {
	return &attribution{store: st, fields: map[string]protowire.Number{}}
}

// sotw returns the names of a SotW response's resources and the sources
// that produced them.
func (a *attribution) sotw(typeURL string, resources []*anypb.Any) (names, sources []string) {
	a.mu.Lock()
	for _, c := range a.cache {
		if c.typeURL == typeURL && len(c.resources) == len(resources) && len(resources) > 0 && samePointers(c.resources, resources) {
			a.mu.Unlock()
			return c.names, c.sources
		}
	}
	a.mu.Unlock()
	names = make([]string, 0, len(resources))
	for _, r := range resources {
		if n := a.name(r); n != "" {
			names = append(names, n)
		}
	}
	sources = a.sources(typeURL, names)
	if len(resources) > 0 {
		a.mu.Lock()
		a.cache[a.next] = attributed{typeURL: typeURL, resources: resources, names: names, sources: sources}
		a.next = (a.next + 1) % attributionCache
		a.mu.Unlock()
	}
	return names, sources
}

func samePointers(x, y []*anypb.Any) bool {
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

// sources returns the sorted sources of the named resources of typeURL.
func (a *attribution) sources(typeURL string, names []string) []string {
	var out []string
	for _, n := range names {
		if e, ok := a.store.Lookup(typeURL, n); ok {
			out = append(out, e.Sources...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// name reads a resource's name from its bytes: the string field named
// "name" (cluster_name for a ClusterLoadAssignment). A type it does not
// know is decoded whole.
func (a *attribution) name(r *anypb.Any) string {
	num := a.field(r.GetTypeUrl())
	if num == 0 {
		return decodeName(r)
	}
	b := r.GetValue()
	for len(b) > 0 {
		n, wt, l := protowire.ConsumeTag(b)
		if l < 0 {
			return ""
		}
		b = b[l:]
		if n == num && wt == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return ""
			}
			return string(v)
		}
		m := protowire.ConsumeFieldValue(n, wt, b)
		if m < 0 {
			return ""
		}
		b = b[m:]
	}
	return ""
}

func (a *attribution) field(typeURL string) protowire.Number {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n, ok := a.fields[typeURL]; ok {
		return n
	}
	var num protowire.Number
	if mt, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL); err == nil {
		fields := mt.Descriptor().Fields()
		for _, name := range []protoreflect.Name{"name", "cluster_name"} {
			if fd := fields.ByName(name); fd != nil && fd.Kind() == protoreflect.StringKind && fd.Cardinality() != protoreflect.Repeated {
				num = fd.Number()
				break
			}
		}
	}
	a.fields[typeURL] = num
	return num
}

func decodeName(r *anypb.Any) string {
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(r.GetTypeUrl())
	if err != nil {
		return ""
	}
	m := mt.New().Interface()
	if proto.Unmarshal(r.GetValue(), m) != nil {
		return ""
	}
	return cache.GetResourceName(m)
}
