package static

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"gopkg.in/yaml.v3"

	"github.com/xdsbridge/xdsbridge/internal/suggest"
	"github.com/xdsbridge/xdsbridge/internal/yamlnode"
	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/sdk/overlay"

	// Resource types a file may serve, and the typed configs their Any
	// fields most often hold, registered so their "@type" resolves.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/service/runtime/v3"
)

// resourceTypes returns the Envoy resource types a file's resources section
// may hold, sorted. Clusters and load assignments are not among them: the
// clusters section generates those.
func resourceTypes() []string {
	return []string{
		"type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
		"type.googleapis.com/envoy.config.listener.v3.Listener",
		"type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
		"type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration",
		"type.googleapis.com/envoy.config.route.v3.VirtualHost",
		"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
		"type.googleapis.com/envoy.service.runtime.v3.Runtime",
	}
}

// endpointKeys returns the keys of an endpoint entry.
func endpointKeys() []string {
	return []string{"address", "port", "weight", "health", "locality", "priority", "hostname", "metadata"}
}

// parseFile parses a cluster file. name is the file's name in errors. It
// returns the full state the file describes, or every problem in it, each
// with File and Line set, sorted by line. A file with any problem yields no
// state at all.
func parseFile(name string, data []byte) (sdk.Update, sdk.ConfigErrors) {
	p := &fileParser{}
	p.Reader = yamlnode.NewReader(len(data), func(line int, msg string) {
		p.errs = append(p.errs, sdk.FieldError{File: name, Line: line, Message: msg})
	})
	upd := p.parse(data)
	if len(p.errs) > 0 {
		errs := slices.Clone(p.errs)
		slices.SortStableFunc(errs, func(a, b sdk.FieldError) int { return a.Line - b.Line })
		return sdk.Update{}, slices.Compact(errs)
	}
	return upd, nil
}

type fileParser struct {
	*yamlnode.Reader
	errs sdk.ConfigErrors
}

// value is jsonValue for the value of key k, reporting an exhausted budget
// at k.
func (p *fileParser) value(path string, k, v *yaml.Node, floats bool) (any, bool) {
	val, ok := p.jsonValue(path, v, floats)
	p.TooLarge(k.Line, path)
	return val, ok && !p.Exhausted()
}

func (p *fileParser) parse(data []byte) sdk.Update {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.YAMLError(data, err)
		return sdk.Update{}
	}
	if len(doc.Content) == 0 || yamlnode.IsNull(doc.Content[0]) {
		// An editor that truncates the file before writing it shows us an
		// empty file for a moment; serving nothing then would drop every
		// cluster. An empty state has to be asked for.
		p.Errorf(1, "file is empty (write `clusters: []` to serve nothing)")
		return sdk.Update{}
	}
	upd := sdk.Update{Full: true, Clusters: []sdk.Cluster{}}
	p.Fields("", nil, doc.Content[0], []string{"clusters", "resources"}, func(key string, k, v *yaml.Node) {
		switch key {
		case "clusters":
			upd.Clusters = p.clusters(k, v)
		case "resources":
			upd.Resources = p.resources(k, v)
		}
	})
	p.TooLarge(1, "")
	return upd
}

func (p *fileParser) clusters(k, v *yaml.Node) []sdk.Cluster {
	out := yamlnode.Named(p.Reader, "clusters", p.List("clusters", k, v),
		"expected a mapping with name and endpoints, found", "duplicate cluster",
		func(path string, line int, n *yaml.Node) (sdk.Cluster, string, int, bool) {
			c, nameLine, ok := p.cluster(path, line, n)
			return c, c.Name, nameLine, ok
		})
	if out == nil {
		return []sdk.Cluster{}
	}
	return out
}

// cluster parses one cluster entry. It returns the name's line and whether
// the entry is free of problems.
func (p *fileParser) cluster(path string, line int, n *yaml.Node) (sdk.Cluster, int, bool) {
	nerrs := len(p.errs)
	var c sdk.Cluster
	nameLine := line
	var nameKey *yaml.Node
	type field struct {
		key *yaml.Node
		val any
	}
	var overlayFields []field
	for _, pr := range p.Pairs(n, path) {
		k, v := pr.Key, pr.Val
		switch k.Value {
		case "name":
			nameKey, nameLine = k, k.Line
			s, ok := p.Str(path+".name", k, v)
			if ok && s == "" {
				p.Errorf(k.Line, "%s.name: must not be empty", path)
			}
			c.Name = s
		case "endpoints":
			c.Endpoints = p.endpoints(path+".endpoints", k, v)
		default:
			val, ok := p.value(path+"."+k.Value, k, v, false)
			if ok {
				overlayFields = append(overlayFields, field{k, val})
			}
		}
	}
	if nameKey == nil {
		p.Errorf(line, "%s: missing name", path)
	}

	// Check each overlay field alone, to report every bad one at its line,
	// then all of them together.
	fields := map[string]any{}
	good := true
	for _, f := range overlayFields {
		fields[f.key.Value] = f.val
		if _, err := overlay.Parse(map[string]any{f.key.Value: f.val}); err != nil {
			good = false
			if s := suggest.Hint(f.key.Value, []string{"name", "endpoints"}); s != "" && strings.Contains(err.Error(), "unknown field") {
				p.Errorf(f.key.Line, "%s: unknown key %q%s", path, f.key.Value, s)
				continue
			}
			msg := strings.TrimPrefix(overlayMessage(err), f.key.Value+": ")
			p.Errorf(f.key.Line, "%s.%s: %s", path, f.key.Value, msg)
		}
	}
	if good && len(fields) > 0 {
		b, err := overlay.Parse(fields)
		if err != nil {
			p.Errorf(line, "%s: %s", path, overlayMessage(err))
		}
		c.Overlay = b
	}
	return c, nameLine, len(p.errs) == nerrs
}

// overlayMessage is an overlay.Parse error without its "overlay: " prefix.
func overlayMessage(err error) string {
	return strings.TrimPrefix(err.Error(), "overlay: ")
}

func (p *fileParser) endpoints(path string, k, v *yaml.Node) []sdk.Endpoint {
	var out []sdk.Endpoint
	seen := map[netip.AddrPort]int{}
	for i, e := range p.List(path, k, v) {
		epath := fmt.Sprintf("%s[%d]", path, i)
		line := e.Line
		e = yamlnode.Resolve(e)
		if e.Kind != yaml.MappingNode {
			p.Errorf(line, "%s: expected a mapping with address and port, found %s", epath, yamlnode.Describe(e))
			continue
		}
		ep, ap, ok := p.endpoint(epath, line, e)
		if !ok {
			continue
		}
		if first, dup := seen[ap]; dup {
			p.Errorf(line, "%s: duplicate endpoint %s (first at line %d)", epath, ap, first)
			continue
		}
		seen[ap] = line
		out = append(out, ep)
	}
	return out
}

// endpoint parses one endpoint entry and returns its address and port.
func (p *fileParser) endpoint(path string, line int, n *yaml.Node) (sdk.Endpoint, netip.AddrPort, bool) {
	nerrs := len(p.errs)
	var ep sdk.Endpoint
	var addr netip.Addr
	var hasAddr, hasPort bool
	p.Fields(path, nil, n, endpointKeys(), func(key string, k, v *yaml.Node) {
		kpath := path + "." + key
		switch key {
		case "address":
			hasAddr = true
			s, ok := p.Str(kpath, k, v)
			if !ok {
				return
			}
			a, err := netip.ParseAddr(s)
			switch {
			case s == "":
				p.Errorf(k.Line, "%s: must not be empty", kpath)
			case err != nil:
				p.Errorf(k.Line, "%s: %q is not an IP address (the static plugin does not resolve host names)", kpath, s)
			case a.Zone() != "":
				p.Errorf(k.Line, "%s: %q has an IPv6 zone, which Envoy does not take", kpath, s)
			default:
				addr = a
				ep.Address = a.String()
			}
		case "port":
			hasPort = true
			if n, ok := p.integer(kpath, k, v); ok {
				if n < 1 || n > 65535 {
					p.Errorf(k.Line, "%s: %d out of range (1-65535)", kpath, n)
					return
				}
				ep.Port = uint32(n)
			}
		case "weight":
			if n, ok := p.integer(kpath, k, v); ok {
				if w, ok := p.uint32(kpath, k, n); ok {
					ep.Weight = w
				}
			}
		case "priority":
			if n, ok := p.integer(kpath, k, v); ok {
				if pr, ok := p.uint32(kpath, k, n); ok {
					ep.Priority = pr
				}
			}
		case "health":
			s, ok := p.Str(kpath, k, v)
			if !ok {
				return
			}
			h, err := sdk.ParseHealth(s)
			if err != nil {
				p.Errorf(k.Line, "%s: %v", kpath, err)
				return
			}
			ep.Health = h
		case "hostname":
			ep.Hostname, _ = p.Str(kpath, k, v)
		case "locality":
			p.Fields(kpath, k, v, []string{"region", "zone", "sub_zone"}, func(key string, k, v *yaml.Node) {
				s, _ := p.Str(kpath+"."+key, k, v)
				switch key {
				case "region":
					ep.Locality.Region = s
				case "zone":
					ep.Locality.Zone = s
				case "sub_zone":
					ep.Locality.SubZone = s
				}
			})
		case "metadata":
			if m := yamlnode.Resolve(v); !yamlnode.IsNull(m) && m.Kind != yaml.MappingNode {
				p.Errorf(k.Line, "%s: expected a mapping, found %s", kpath, yamlnode.Describe(m))
				return
			}
			if md, ok := p.value(kpath, k, v, true); ok && md != nil {
				ep.Metadata = md.(map[string]any)
			}
		}
	})
	if !hasAddr {
		p.Errorf(line, "%s: missing address", path)
	}
	if !hasPort {
		p.Errorf(line, "%s: missing port", path)
	}
	return ep, netip.AddrPortFrom(addr, uint16(ep.Port)), len(p.errs) == nerrs
}

var wholeRE = regexp.MustCompile(`^[-+]?[0-9_]+$`)

// integer reads an integer value.
func (p *fileParser) integer(path string, k, v *yaml.Node) (int64, bool) {
	v = yamlnode.Resolve(v)
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!float" && wholeRE.MatchString(v.Value) {
		p.Errorf(k.Line, "%s: %s is out of range", path, v.Value)
		return 0, false
	}
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" {
		p.Errorf(k.Line, "%s: expected a whole number, found %s", path, yamlnode.Describe(v))
		return 0, false
	}
	var n int64
	if err := v.Decode(&n); err != nil {
		p.Errorf(k.Line, "%s: %s is out of range", path, v.Value)
		return 0, false
	}
	return n, true
}

func (p *fileParser) uint32(path string, k *yaml.Node, n int64) (uint32, bool) {
	switch {
	case n < 0:
		p.Errorf(k.Line, "%s: must not be negative, got %d", path, n)
		return 0, false
	case n > math.MaxUint32:
		p.Errorf(k.Line, "%s: %d out of range (0-%d)", path, n, uint32(math.MaxUint32))
		return 0, false
	}
	return uint32(n), true
}

// resources parses the resources section.
func (p *fileParser) resources(k, v *yaml.Node) []sdk.Resource {
	var out []sdk.Resource
	seen := map[sdk.ResourceRef]int{}
	for i, e := range p.List("resources", k, v) {
		path := fmt.Sprintf("resources[%d]", i)
		line := e.Line
		e = yamlnode.Resolve(e)
		if e.Kind != yaml.MappingNode {
			p.Errorf(line, "%s: expected a mapping with \"@type\" and name, found %s", path, yamlnode.Describe(e))
			continue
		}
		r, ok := p.resource(path, line, e)
		if !ok {
			continue
		}
		ref := sdk.ResourceRef{TypeURL: r.TypeURL, Name: r.Name}
		if first, dup := seen[ref]; dup {
			p.Errorf(line, "%s: duplicate %s %q (first at line %d)", path, shortType(r.TypeURL), r.Name, first)
			continue
		}
		seen[ref] = line
		out = append(out, r)
	}
	return out
}

func shortType(url string) string {
	return url[strings.LastIndexByte(url, '.')+1:]
}

// resource parses one Envoy-native resource.
func (p *fileParser) resource(path string, line int, n *yaml.Node) (sdk.Resource, bool) {
	val, ok := p.jsonValue(path, n, false)
	p.TooLarge(line, path)
	if !ok || p.Exhausted() {
		return sdk.Resource{}, false
	}
	obj := val.(map[string]any)
	typeURL, _ := obj["@type"].(string)
	typeLine := line
	if k, _ := lookup(n, "@type"); k != nil {
		typeLine = k.Line
	}
	switch {
	case obj["@type"] == nil:
		p.Errorf(line, "%s: missing \"@type\" (e.g. type.googleapis.com/envoy.config.listener.v3.Listener)", path)
		return sdk.Resource{}, false
	case !slices.Contains(resourceTypes(), typeURL):
		msg := fmt.Sprintf("%s.@type: unsupported resource type %v", path, obj["@type"])
		switch hint := suggest.Hint(typeURL, resourceTypes()); {
		case strings.HasSuffix(typeURL, ".Cluster") || strings.HasSuffix(typeURL, ".ClusterLoadAssignment"):
			msg += " (clusters and their endpoints go in the clusters section)"
		case hint != "":
			msg += hint
		default:
			var short []string
			for _, t := range resourceTypes() {
				short = append(short, shortType(t))
			}
			msg += fmt.Sprintf(" (valid: type.googleapis.com/ followed by the full name of %s)", strings.Join(short, ", "))
		}
		p.Errorf(typeLine, "%s", msg)
		return sdk.Resource{}, false
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
	if err != nil {
		p.Errorf(typeLine, "%s.@type: %s is not a known message type", path, typeURL)
		return sdk.Resource{}, false
	}
	delete(obj, "@type")
	// protojson names only the first unknown field, and without a line.
	md := mt.Descriptor()
	unknown := false
	for _, pr := range p.Pairs(n, path) {
		k := pr.Key.Value
		if k == "@type" || md.Fields().ByJSONName(k) != nil || md.Fields().ByName(protoreflect.Name(k)) != nil {
			continue
		}
		unknown = true
		names := make([]string, md.Fields().Len())
		for i := range names {
			names[i] = string(md.Fields().Get(i).Name())
		}
		p.Errorf(pr.Key.Line, "%s: unknown field %q in %s%s", path, k, md.Name(), suggest.Hint(k, names))
	}
	if unknown {
		return sdk.Resource{}, false
	}
	msg := mt.New().Interface()
	if err := unmarshalJSON(obj, msg); err != nil {
		// Find the first top-level field at fault, for its line.
		eline, epath := line, path
		for _, pr := range p.Pairs(n, path) {
			if pr.Key.Value == "@type" {
				continue
			}
			if unmarshalJSON(map[string]any{pr.Key.Value: obj[pr.Key.Value]}, mt.New().Interface()) != nil {
				eline, epath = pr.Key.Line, path+"."+pr.Key.Value
				break
			}
		}
		p.Errorf(eline, "%s: %s", epath, protoMessage(err))
		return sdk.Resource{}, false
	}
	name := msg.ProtoReflect().Get(msg.ProtoReflect().Descriptor().Fields().ByName("name")).String()
	if name == "" {
		p.Errorf(line, "%s: missing name", path)
		return sdk.Resource{}, false
	}
	if v, ok := msg.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			p.Errorf(line, "%s: invalid %s %q: %v", path, shortType(typeURL), name, err)
			return sdk.Resource{}, false
		}
	}
	r, err := sdk.NewResource(msg)
	if err != nil {
		p.Errorf(line, "%s: %v", path, err)
		return sdk.Resource{}, false
	}
	return r, true
}

func unmarshalJSON(obj map[string]any, m proto.Message) error {
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	return protojson.Unmarshal(b, m)
}

// protoPrefix matches what protobuf-go puts around its error texts: a
// "proto:" prefix followed by a space or a no-break space (chosen at
// random), and positions in the generated JSON, of no use to a reader of the
// YAML.
var (
	protoPrefix = regexp.MustCompile(`^proto:[\s\x{00a0}]*(\(line \d+:\d+\):)?`)
	protoLine   = regexp.MustCompile(`[\s\x{00a0}]*\(line \d+:\d+\)`)
	protoSpace  = regexp.MustCompile(`[\s\x{00a0}]+`)
)

func protoMessage(err error) string {
	s := protoLine.ReplaceAllString(protoPrefix.ReplaceAllString(err.Error(), ""), "")
	s = strings.TrimSpace(protoSpace.ReplaceAllString(s, " "))
	if m := unresolvedRE.FindStringSubmatch(s); m != nil {
		return fmt.Sprintf("unknown \"@type\" %q: not an Envoy type the static plugin knows", m[1])
	}
	return s
}

var unresolvedRE = regexp.MustCompile(`^unable to resolve "([^"]*)": "not found"$`)

// Node helpers.

// lookup finds an explicit key of mapping n.
func lookup(n *yaml.Node, key string) (k, v *yaml.Node) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if kn := yamlnode.Resolve(n.Content[i]); kn.Kind == yaml.ScalarNode && kn.Value == key {
			return kn, n.Content[i+1]
		}
	}
	return nil, nil
}

// jsonValue converts a node to a JSON-like value: map[string]any, []any,
// string, bool, nil, and numbers as int64, uint64 or float64 (all float64
// when floats is set, as sdk.Endpoint.Metadata wants).
func (p *fileParser) jsonValue(path string, n *yaml.Node, floats bool) (any, bool) {
	n = yamlnode.Resolve(n)
	if !p.Spend(1) {
		return nil, false
	}
	switch n.Kind {
	case yaml.MappingNode:
		out := map[string]any{}
		ok := true
		for _, pr := range p.Pairs(n, path) {
			v, good := p.jsonValue(path+"."+pr.Key.Value, pr.Val, floats)
			ok = ok && good
			out[pr.Key.Value] = v
		}
		return out, ok
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		ok := true
		for i, e := range n.Content {
			v, good := p.jsonValue(fmt.Sprintf("%s[%d]", path, i), e, floats)
			ok = ok && good
			out = append(out, v)
		}
		return out, ok
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil, true
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				p.Errorf(n.Line, "%s: %s is not a boolean", path, n.Value)
				return nil, false
			}
			return b, true
		case "!!int":
			var i int64
			if err := n.Decode(&i); err == nil {
				if floats {
					return float64(i), true
				}
				return i, true
			}
			var u uint64
			if err := n.Decode(&u); err == nil {
				if floats {
					return float64(u), true
				}
				return u, true
			}
			p.Errorf(n.Line, "%s: number %s is out of range", path, n.Value)
			return nil, false
		case "!!float":
			var f float64
			if err := n.Decode(&f); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				p.Errorf(n.Line, "%s: %s is not a finite number", path, n.Value)
				return nil, false
			}
			return f, true
		default:
			return n.Value, true
		}
	}
	p.Errorf(n.Line, "%s: unexpected YAML node", path)
	return nil, false
}
