package xds

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/xdsbridge/xdsbridge/xds/store"
)

// callbacks watch every stream for NACKs. A NACK is logged once with the
// node, the type, the names of the rejected resources, the client's error
// and the sources that produced those resources.
type callbacks struct {
	logger *slog.Logger
	store  *store.Store

	mu   sync.Mutex
	last map[int64]map[string]sent // stream → type URL → last response
}

// sent is the last response of one type on one stream: kept as the pointer
// the server already built, decoded only if the client rejects it.
type sent struct {
	sotw  *discovery.DiscoveryResponse
	delta *discovery.DeltaDiscoveryResponse
}

func newCallbacks(logger *slog.Logger, st *store.Store) *callbacks {
	return &callbacks{logger: logger, store: st, last: map[int64]map[string]sent{}}
}

func (c *callbacks) OnStreamOpen(context.Context, int64, string) error      { return nil }
func (c *callbacks) OnDeltaStreamOpen(context.Context, int64, string) error { return nil }
func (c *callbacks) OnStreamClosed(id int64, _ *core.Node)                  { c.forget(id) }
func (c *callbacks) OnDeltaStreamClosed(id int64, _ *core.Node)             { c.forget(id) }

func (c *callbacks) forget(id int64) {
	c.mu.Lock()
	delete(c.last, id)
	c.mu.Unlock()
}

func (c *callbacks) remember(id int64, typeURL string, s sent) {
	c.mu.Lock()
	m := c.last[id]
	if m == nil {
		m = map[string]sent{}
		c.last[id] = m
	}
	m[typeURL] = s
	c.mu.Unlock()
}

func (c *callbacks) lastSent(id int64, typeURL string) sent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last[id][typeURL]
}

func (c *callbacks) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	if req.GetErrorDetail() != nil {
		var names []string
		if s := c.lastSent(id, req.GetTypeUrl()); s.sotw != nil {
			names = resourceNames(s.sotw.GetResources())
		}
		c.logNACK(req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), names, req.GetErrorDetail().GetMessage())
	}
	return nil
}

func (c *callbacks) OnStreamResponse(_ context.Context, id int64, req *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	c.remember(id, req.GetTypeUrl(), sent{sotw: resp})
}

func (c *callbacks) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	if req.GetErrorDetail() != nil {
		var names []string
		if s := c.lastSent(id, req.GetTypeUrl()); s.delta != nil {
			for _, r := range s.delta.GetResources() {
				names = append(names, r.GetName())
			}
		}
		c.logNACK(req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), names, req.GetErrorDetail().GetMessage())
	}
	return nil
}

func (c *callbacks) OnStreamDeltaResponse(id int64, req *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	c.remember(id, req.GetTypeUrl(), sent{delta: resp})
}

func (c *callbacks) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error { return nil }
func (c *callbacks) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {
}

func (c *callbacks) logNACK(node *core.Node, typeURL, nonce string, names []string, detail string) {
	var sources []string
	for _, n := range names {
		if e, ok := c.store.Lookup(typeURL, n); ok {
			sources = append(sources, e.Sources...)
		}
	}
	slices.Sort(sources)
	sources = slices.Compact(sources)
	c.logger.Warn("client rejected a response (NACK); it will not be re-sent until its content changes",
		"node", node.GetId(), "node_cluster", node.GetCluster(), "type", typeURL, "nonce", nonce,
		"resources", names, "sources", sources, "detail", detail)
}

// resourceNames decodes the names of a response's resources.
func resourceNames(anys []*anypb.Any) []string {
	names := make([]string, 0, len(anys))
	for _, a := range anys {
		mt, err := protoregistry.GlobalTypes.FindMessageByURL(a.GetTypeUrl())
		if err != nil {
			continue
		}
		m := mt.New().Interface()
		if proto.Unmarshal(a.GetValue(), m) == nil {
			names = append(names, cache.GetResourceName(m))
		}
	}
	return names
}

var _ serverv3.Callbacks = (*callbacks)(nil)
