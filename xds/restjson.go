package xds

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"sync"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// restGateway answers REST discovery requests as go-control-plane's
// HTTPGateway does — the same paths, request parsing, errors and status
// codes, 304 for a request already at the version, and a DiscoveryResponse
// in protojson with proto field names — but it encodes each resource's JSON
// once per resource version instead of on every poll (see restJSON).
type restGateway struct {
	server serverv3.Server
	json   *restJSON
}

func newRESTGateway(server serverv3.Server) *restGateway {
	return &restGateway{server: server, json: newRESTJSON()}
}

// restTypes are the REST paths and the types they serve.
var restTypes = map[string]string{
	resource.FetchEndpoints:        resource.EndpointType,
	resource.FetchClusters:         resource.ClusterType,
	resource.FetchListeners:        resource.ListenerType,
	resource.FetchRoutes:           resource.RouteType,
	resource.FetchScopedRoutes:     resource.ScopedRouteType,
	resource.FetchSecrets:          resource.SecretType,
	resource.FetchRuntimes:         resource.RuntimeType,
	resource.FetchExtensionConfigs: resource.ExtensionConfigType,
}

// ServeHTTP returns the response body and status code, or an error with
// the status code to report it with.
func (g *restGateway) ServeHTTP(req *http.Request) ([]byte, int, error) {
	typeURL, ok := restTypes[path.Clean(req.URL.Path)]
	if !ok {
		return nil, http.StatusNotFound, errors.New("no endpoint")
	}
	if req.Body == nil {
		return nil, http.StatusBadRequest, errors.New("empty body")
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, http.StatusBadRequest, errors.New("cannot read body")
	}
	in := &discovery.DiscoveryRequest{}
	if err := protojson.Unmarshal(body, in); err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("cannot parse JSON body: %w", err)
	}
	in.TypeUrl = typeURL
	res, err := g.server.Fetch(req.Context(), in)
	if err != nil {
		// Already at the version: 304, which tells the client so.
		var skip *types.SkipFetchError
		if errors.As(err, &skip) {
			return nil, http.StatusNotModified, nil
		}
		return nil, http.StatusInternalServerError, fmt.Errorf("fetch error: %w", err)
	}
	b, err := g.json.marshal(res)
	if err != nil {
		return nil, http.StatusInternalServerError, fmt.Errorf("marshal error: %w", err)
	}
	return b, http.StatusOK, nil
}

// restJSON encodes DiscoveryResponses as protojson (proto field names, no
// indentation) does, byte for byte, from each resource's JSON encoded once.
//
// The store gives every version of a resource one immutable *anypb.Any,
// shared by every response that carries that version (and the REST cluster
// rewrite keeps one per version too), so the cache is keyed by that
// pointer. It keeps two generations: what was served in the current one
// and in the one before; an entry not served for a whole generation is
// dropped, with the Any it holds. An Any the cache has not seen (a new
// version) is encoded once, by whichever poll needs it first.
//
// protojson's compact output is stable within a binary (a comma is
// followed by a space or not, the same everywhere), so the response is the
// envelope protojson makes with a placeholder in place of the resources,
// with the resources' JSON joined by the separator protojson uses.
type restJSON struct {
	mu       sync.Mutex
	cur, old map[*anypb.Any]*jsonEntry
	rotated  time.Time
}

// restJSONGeneration is how long a resource's JSON is kept unserved: REST
// clients poll every RESTRefreshDelay, so a resource any of them still
// polls is served many times a generation.
const restJSONGeneration = 30 * time.Second

type jsonEntry struct {
	once sync.Once
	b    []byte
	err  error
}

var (
	restMarshal = protojson.MarshalOptions{UseProtoNames: true}
	// restSep is what protojson writes between two values of an array.
	restSep = sync.OnceValue(func() []byte {
		b, err := restMarshal.Marshal(&discovery.DiscoveryResponse{Resources: []*anypb.Any{{}, {}}})
		if err != nil {
			panic(fmt.Sprintf("xds: protojson cannot encode a placeholder response: %v", err))
		}
		const head, tail = `{"resources":[{}`, `{}]}`
		return bytes.Clone(b[len(head) : len(b)-len(tail)])
	})
)

// restPlaceholder is the resources of an envelope, as protojson writes
// them: one empty Any. It cannot occur in a string value (its quotes would
// be escaped) nor elsewhere in a DiscoveryResponse (a field name occurs
// once).
const restPlaceholder = `"resources":[{}]`

func newRESTJSON() *restJSON {
	return &restJSON{cur: map[*anypb.Any]*jsonEntry{}, old: map[*anypb.Any]*jsonEntry{}, rotated: time.Now()}
}

// marshal returns protojson's encoding of resp.
func (j *restJSON) marshal(resp *discovery.DiscoveryResponse) ([]byte, error) {
	anys := resp.GetResources()
	if len(anys) == 0 {
		return restMarshal.Marshal(resp)
	}
	entries := j.entries(anys)
	frags := make([][]byte, len(anys))
	size := 0
	for i, e := range entries {
		e.once.Do(func() { e.b, e.err = restMarshal.Marshal(anys[i]) })
		if e.err != nil {
			return nil, e.err
		}
		frags[i] = e.b
		size += len(e.b)
	}
	env, err := restMarshal.Marshal(envelope(resp))
	if err != nil {
		return nil, err
	}
	at := bytes.Index(env, []byte(restPlaceholder))
	if at < 0 {
		return nil, fmt.Errorf("rest: no resources placeholder in %q", env)
	}
	head := env[:at+len(restPlaceholder)-len("{}]")]
	tail := env[at+len(restPlaceholder)-len("]"):]
	sep := restSep()
	out := make([]byte, 0, len(env)+size+len(sep)*len(frags))
	out = append(out, head...)
	for i, b := range frags {
		if i > 0 {
			out = append(out, sep...)
		}
		out = append(out, b...)
	}
	return append(out, tail...), nil
}

// envelope returns resp's fields but the resources, which are one empty
// Any. The fields are shared, not copied.
func envelope(resp *discovery.DiscoveryResponse) *discovery.DiscoveryResponse {
	env := &discovery.DiscoveryResponse{}
	dst := env.ProtoReflect()
	resp.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Name() != "resources" {
			dst.Set(fd, v)
		}
		return true
	})
	env.Resources = []*anypb.Any{{}}
	return env
}

// entries returns the cache entries of anys, new ones for Anys not seen,
// under one lock; the JSON is encoded outside it.
func (j *restJSON) entries(anys []*anypb.Any) []*jsonEntry {
	out := make([]*jsonEntry, len(anys))
	j.mu.Lock()
	defer j.mu.Unlock()
	if now := time.Now(); now.Sub(j.rotated) >= restJSONGeneration {
		j.old, j.cur, j.rotated = j.cur, make(map[*anypb.Any]*jsonEntry, len(j.cur)), now
	}
	for i, a := range anys {
		e, ok := j.cur[a]
		if !ok {
			if e, ok = j.old[a]; ok {
				delete(j.old, a)
			} else {
				e = &jsonEntry{}
			}
			j.cur[a] = e
		}
		out[i] = e
	}
	return out
}

// size is how many resources' JSON the cache holds.
func (j *restJSON) size() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.cur) + len(j.old)
}
