package xds

import (
	"context"
	"sync/atomic"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/stats"

	"github.com/xdsbridge/xdsbridge/xds/conns"
)

// connState is what the server keeps per gRPC connection, in the
// connection's context: every stream's context carries it, which is how
// go-control-plane's callbacks join a stream to its connection.
type connState struct {
	peer    string
	reg     *conns.Conn
	tracked *trackedConn
	limit   *rate.Limiter // nil: unlimited
}

type connStateKey struct{}

func connStateFrom(ctx context.Context) *connState {
	cs, _ := ctx.Value(connStateKey{}).(*connState)
	return cs
}

// rpcState is kept per RPC, in its context: the stream callbacks fill it
// in when the stream opens, so that written responses count for it.
type rpcState struct {
	stream atomic.Pointer[streamState]
}

type rpcStateKey struct{}

func rpcStateFrom(ctx context.Context) *rpcState {
	rs, _ := ctx.Value(rpcStateKey{}).(*rpcState)
	return rs
}

// statsHandler registers connections when gRPC starts serving them and
// forgets them when it stops, and counts the bytes of every response
// written and its push latency.
type statsHandler struct {
	s *Server
}

var _ stats.Handler = (*statsHandler)(nil)

func (h *statsHandler) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	s := h.s
	cs := &connState{peer: addrString(info.RemoteAddr), reg: s.clients.Open(info.RemoteAddr, info.LocalAddr), limit: s.limiter.forConn()}
	if s.lis != nil {
		cs.tracked = s.lis.claim(info.LocalAddr, info.RemoteAddr)
	}
	return context.WithValue(ctx, connStateKey{}, cs)
}

func (h *statsHandler) HandleConn(ctx context.Context, st stats.ConnStats) {
	if _, ok := st.(*stats.ConnEnd); !ok {
		return
	}
	cs := connStateFrom(ctx)
	if cs == nil {
		return
	}
	reason, detail := cs.tracked.reason(h.s.opts.Keepalive)
	if h.s.shuttingDown.Load() {
		reason, detail = conns.ReasonShutdown, ""
	}
	cs.reg.Close(reason, detail)
	h.s.metrics.disconnects.WithLabelValues(string(reason)).Inc()
	level := h.s.opts.Logger.Debug
	if reason == conns.ReasonKeepalive {
		level = h.s.opts.Logger.Info
	}
	level("client disconnected", "connection", cs.reg.ID(), "peer", cs.peer, "reason", string(reason), "detail", detail)
}

func (h *statsHandler) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, rpcStateKey{}, &rpcState{})
}

func (h *statsHandler) HandleRPC(ctx context.Context, st stats.RPCStats) {
	out, ok := st.(*stats.OutPayload)
	if !ok || out.Client {
		return
	}
	rs := rpcStateFrom(ctx)
	if rs == nil {
		return
	}
	ss := rs.stream.Load()
	if ss == nil {
		return
	}
	var typeURL, version string
	switch p := out.Payload.(type) {
	case *sotwOut:
		typeURL, version = p.resp.GetTypeUrl(), p.resp.GetVersionInfo()
	case *discovery.DiscoveryResponse:
		typeURL, version = p.GetTypeUrl(), p.GetVersionInfo()
	case *discovery.DeltaDiscoveryResponse:
		typeURL, version = p.GetTypeUrl(), p.GetSystemVersionInfo()
	default:
		return
	}
	subscribed := ss.reg.Written(typeURL, out.WireLength)
	label := typeLabel(typeURL)
	h.s.metrics.bytes.WithLabelValues(ss.kind.String(), label).Add(float64(out.WireLength))
	if c := h.s.opts.Clock; c != nil {
		if received, published, ok := c.Lookup(typeURL, version); ok && !subscribed.IsZero() && !subscribed.After(published) {
			h.s.metrics.pushLatency.WithLabelValues(label).Observe(out.SentTime.Sub(received).Seconds())
		}
	}
}
