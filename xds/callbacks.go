package xds

import (
	"context"
	"log/slog"
	"sync"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc/peer"

	"github.com/xdsbridge/xdsbridge/xds/conns"
	"github.com/xdsbridge/xdsbridge/xds/store"
)

// callbacks follow every stream and REST fetch: they keep the connection
// registry current, count requests, responses, ACKs and NACKs, and log each
// NACK once with the node, the type, the names of the rejected resources,
// the client's error and the sources that produced those resources.
type callbacks struct {
	logger  *slog.Logger
	clients *conns.Registry
	metrics *metrics
	attr    *attribution

	mu      sync.Mutex
	streams map[streamKey]*streamState
	fetches map[*discovery.DiscoveryRequest]*restCall
}

// streamKey names a stream: the SotW and delta servers number their
// streams independently.
type streamKey struct {
	delta bool
	id    int64
}

// streamState is one stream: its registry entry and its last responses,
// kept as the pointers the server already built and decoded only when the
// client answers them.
type streamState struct {
	reg     *conns.Stream
	kind    conns.Kind
	typeURL string // the stream's type; "" for ADS

	mu   sync.Mutex
	node *core.Node        // delta requests after the first may omit it
	sent map[string][]sent // type URL → last responses, newest last
}

// sentKept is how many responses per type a stream keeps to attribute a
// late ACK or NACK.
const sentKept = 2

type sent struct {
	nonce string
	sotw  *discovery.DiscoveryResponse
	delta *discovery.DeltaDiscoveryResponse
}

func (ss *streamState) remember(typeURL string, s sent) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	l := append(ss.sent[typeURL], s)
	if len(l) > sentKept {
		l = append(l[:0], l[len(l)-sentKept:]...)
	}
	ss.sent[typeURL] = l
}

// find returns the response with nonce, or the last one of the type.
func (ss *streamState) find(typeURL, nonce string) sent {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	l := ss.sent[typeURL]
	for i := len(l) - 1; i >= 0; i-- {
		if l[i].nonce == nonce {
			return l[i]
		}
	}
	if len(l) > 0 {
		return l[len(l)-1]
	}
	return sent{}
}

func newCallbacks(logger *slog.Logger, st *store.Store, clients *conns.Registry, m *metrics) *callbacks {
	return &callbacks{
		logger:  logger,
		clients: clients,
		metrics: m,
		attr:    newAttribution(st),
		streams: map[streamKey]*streamState{},
		fetches: map[*discovery.DiscoveryRequest]*restCall{},
	}
}

func streamKind(typeURL string, delta bool) conns.Kind {
	switch {
	case delta && typeURL == resource.AnyType:
		return conns.DeltaADS
	case delta:
		return conns.Delta
	case typeURL == resource.AnyType:
		return conns.SotWADS
	}
	return conns.SotW
}

func (c *callbacks) open(ctx context.Context, id int64, typeURL string, delta bool) {
	ss := &streamState{kind: streamKind(typeURL, delta), typeURL: typeURL, sent: map[string][]sent{}}
	if cs := connStateFrom(ctx); cs != nil {
		ss.reg = cs.reg.OpenStream(id, ss.kind, typeURL)
	}
	c.mu.Lock()
	c.streams[streamKey{delta, id}] = ss
	c.mu.Unlock()
	if rs := rpcStateFrom(ctx); rs != nil {
		rs.stream.Store(ss)
	}
}

func (c *callbacks) stream(delta bool, id int64) *streamState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ss := c.streams[streamKey{delta, id}]; ss != nil {
		return ss
	}
	// A stream the callbacks did not see open: track nothing about it.
	return &streamState{kind: streamKind("", delta), sent: map[string][]sent{}}
}

func (c *callbacks) closeStream(delta bool, id int64) {
	c.mu.Lock()
	ss := c.streams[streamKey{delta, id}]
	delete(c.streams, streamKey{delta, id})
	c.mu.Unlock()
	if ss != nil {
		ss.reg.Close()
	}
}

func (c *callbacks) OnStreamOpen(ctx context.Context, id int64, typeURL string) error {
	c.open(ctx, id, typeURL, false)
	return nil
}

func (c *callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, typeURL string) error {
	c.open(ctx, id, typeURL, true)
	return nil
}

func (c *callbacks) OnStreamClosed(id int64, _ *core.Node)      { c.closeStream(false, id) }
func (c *callbacks) OnDeltaStreamClosed(id int64, _ *core.Node) { c.closeStream(true, id) }

func (c *callbacks) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	ss := c.stream(false, id)
	out := ss.reg.Request(req)
	typeURL := req.GetTypeUrl()
	c.metrics.requests.WithLabelValues(ss.kind.String(), typeLabel(typeURL)).Inc()
	if out.Verdict == conns.Subscribe {
		return nil
	}
	var names, sources []string
	if s := ss.find(typeURL, out.Nonce); s.sotw != nil {
		names, sources = c.attr.sotw(typeURL, s.sotw.GetResources())
	}
	c.judge(req.GetNode(), typeURL, out, names, sources, req.GetErrorDetail().GetMessage())
	return nil
}

func (c *callbacks) OnStreamResponse(_ context.Context, id int64, req *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	ss := c.stream(false, id)
	typeURL := resp.GetTypeUrl()
	if typeURL == "" {
		typeURL = req.GetTypeUrl()
	}
	ss.reg.Response(typeURL, resp.GetVersionInfo(), resp.GetNonce(), len(resp.GetResources()), 0)
	ss.remember(typeURL, sent{nonce: resp.GetNonce(), sotw: resp})
	c.metrics.responses.WithLabelValues(ss.kind.String(), typeLabel(typeURL)).Inc()
}

func (c *callbacks) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	ss := c.stream(true, id)
	out := ss.reg.DeltaRequest(req)
	typeURL := req.GetTypeUrl()
	if typeURL == "" {
		typeURL = ss.typeURL
	}
	ss.mu.Lock()
	if req.GetNode() != nil {
		ss.node = req.GetNode()
	}
	node := ss.node
	ss.mu.Unlock()
	c.metrics.requests.WithLabelValues(ss.kind.String(), typeLabel(typeURL)).Inc()
	if out.Verdict == conns.Subscribe {
		return nil
	}
	var names []string
	if s := ss.find(typeURL, out.Nonce); s.delta != nil {
		for _, r := range s.delta.GetResources() {
			names = append(names, r.GetName())
		}
	}
	c.judge(node, typeURL, out, names, c.attr.sources(typeURL, names), req.GetErrorDetail().GetMessage())
	return nil
}

func (c *callbacks) OnStreamDeltaResponse(id int64, req *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	ss := c.stream(true, id)
	typeURL := resp.GetTypeUrl()
	if typeURL == "" {
		typeURL = req.GetTypeUrl()
	}
	ss.reg.Response(typeURL, resp.GetSystemVersionInfo(), resp.GetNonce(), len(resp.GetResources()), len(resp.GetRemovedResources()))
	ss.remember(typeURL, sent{nonce: resp.GetNonce(), delta: resp})
	c.metrics.responses.WithLabelValues(ss.kind.String(), typeLabel(typeURL)).Inc()
}

// restCall is one REST request, in its context from the REST handler
// through the fetch callbacks and back.
type restCall struct {
	peer  string
	fetch *conns.Fetch
	req   *discovery.DiscoveryRequest
	resp  *discovery.DiscoveryResponse
}

type restCallKey struct{}

func withRESTCall(ctx context.Context, call *restCall) context.Context {
	return context.WithValue(ctx, restCallKey{}, call)
}

func (c *callbacks) OnFetchRequest(ctx context.Context, req *discovery.DiscoveryRequest) error {
	call, fromHandler := ctx.Value(restCallKey{}).(*restCall)
	if !fromHandler {
		// Not through the REST handler, which would report the response.
		call = &restCall{}
		if p, ok := peer.FromContext(ctx); ok {
			call.peer = addrString(p.Addr)
		}
	}
	f, out := c.clients.Fetch(call.peer, req)
	call.fetch, call.req = f, req
	if fromHandler {
		c.mu.Lock()
		c.fetches[req] = call
		c.mu.Unlock()
	}
	typeURL := req.GetTypeUrl()
	c.metrics.requests.WithLabelValues(kindREST, typeLabel(typeURL)).Inc()
	if out.Verdict != conns.Subscribe {
		names := f.LastSentNames()
		c.judge(req.GetNode(), typeURL, out, names, c.attr.sources(typeURL, names), req.GetErrorDetail().GetMessage())
	}
	return nil
}

func (c *callbacks) OnFetchResponse(req *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	c.mu.Lock()
	call := c.fetches[req]
	c.mu.Unlock()
	if call != nil {
		call.resp = resp
	}
	c.metrics.responses.WithLabelValues(kindREST, typeLabel(req.GetTypeUrl())).Inc()
}

// fetchDone records how the REST handler answered: its status code and
// the size of the body it wrote.
func (c *callbacks) fetchDone(call *restCall, code, bytes int) {
	if call.req == nil {
		return
	}
	c.mu.Lock()
	delete(c.fetches, call.req)
	c.mu.Unlock()
	typeURL := call.req.GetTypeUrl()
	switch {
	case call.resp != nil && code == 200:
		names, _ := c.attr.sotw(typeURL, call.resp.GetResources())
		call.fetch.Response(call.resp.GetVersionInfo(), names, bytes)
		c.metrics.bytes.WithLabelValues(kindREST, typeLabel(typeURL)).Add(float64(bytes))
	case code == 304:
		call.fetch.NotModified()
	}
}

// judge counts an ACK or NACK for every source of the answered response,
// and logs a NACK.
func (c *callbacks) judge(node *core.Node, typeURL string, out conns.Outcome, names, sources []string, detail string) {
	counter := c.metrics.acks
	if out.Verdict == conns.NACK {
		counter = c.metrics.nacks
	}
	label := typeLabel(typeURL)
	if len(sources) == 0 {
		counter.WithLabelValues(label, "").Inc()
	}
	for _, s := range sources {
		counter.WithLabelValues(label, s).Inc()
	}
	if out.Verdict == conns.NACK {
		c.logger.Warn("client rejected a response (NACK); it will not be re-sent until its content changes",
			"node", node.GetId(), "node_cluster", node.GetCluster(), "type", typeURL, "version", out.Version, "nonce", out.Nonce,
			"resources", names, "sources", sources, "detail", detail)
	}
}

var _ serverv3.Callbacks = (*callbacks)(nil)
