package xds

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/xdsbridge/xdsbridge/xds/store"
)

// sotwServer serves state-of-the-world streams, aggregated (ADS) and of one
// type each, from the store's Subs. It replaces go-control-plane's generic
// stream server for them, whose cost per client was the fleet's bottleneck:
// every response marshalled again for every stream, and every ACK, which
// repeats every subscribed name, turned into a new subscription and a new
// watch. Here a response is encoded once and its bytes are written to every
// stream that sends it (each with its own nonce after them), and an ACK
// whose names are those of the last request only arms the subscription
// again.
//
// The protocol is go-control-plane's: a type's first request subscribes;
// each response waits for the client's answer (ACK or NACK) to the one
// before; a request whose nonce is not the type's last response's is stale
// and ignored; an empty first request is a legacy wildcard. An aggregated
// stream sends what is pending in type order (clusters before endpoints,
// listeners before routes). The callbacks see every request and response
// as they did.
type sotwServer struct {
	// ctx ends every stream, at shutdown.
	ctx    context.Context
	store  *store.Store
	gate   *gate
	cb     *callbacks
	logger *slog.Logger
	ids    atomic.Int64
	// bufs are request buffers, shared by the streams: an idle stream
	// holds none.
	bufs inBufs
	// lists are the resource name lists of the streams' requests, shared
	// by the streams that send the same.
	lists nameLists
}

// sotwStream is one stream, owned by its handler goroutine.
type sotwStream struct {
	srv         *sotwServer
	ss          grpc.ServerStream
	id          int64
	defaultType string
	wake        chan struct{}
	node        *discovery.DiscoveryRequest // last request that named a node
	nonce       int64
	types       []*sotwType // in notification order
}

// sotwType is a stream's subscription to one type.
type sotwType struct {
	url string
	// legacy: no request has named a resource yet, so an empty request is
	// a wildcard subscription.
	legacy   bool
	wildcard bool
	names    *nameList // as the last request listed them, "*" included
	sub      *store.Sub
	// nonce is that of the last response; "" before the first.
	nonce string
	// req is the last request, for the response callback.
	req *discovery.DiscoveryRequest
}

func (s *sotwServer) serve(ss grpc.ServerStream, defaultType string) error {
	ctx := ss.Context()
	st := &sotwStream{srv: s, ss: ss, id: s.ids.Add(1), defaultType: defaultType, wake: make(chan struct{}, 1)}
	if err := s.cb.OnStreamOpen(ctx, st.id, defaultType); err != nil {
		return err
	}
	defer func() {
		for _, t := range st.types {
			if t.sub != nil {
				t.sub.Close()
			}
			s.lists.release(t.names)
		}
		s.cb.OnStreamClosed(st.id, st.node.GetNode())
	}()

	// Requests are read by their own goroutine, so that responses can be
	// written while it waits. It ends with the stream, once this handler
	// has returned, as gRPC ends a stream's reads then. It alternates
	// between two requests: the handler is done with one before it takes
	// the next.
	reqs := make(chan *sotwIn)
	go func() {
		defer close(reqs)
		ins := [2]sotwIn{{bufs: &s.bufs}, {bufs: &s.bufs}}
		for i := 0; ; i ^= 1 {
			in := &ins[i]
			if err := ss.RecvMsg(in); err != nil {
				in.release()
				if !errors.Is(err, io.EOF) && ctx.Err() == nil {
					s.logger.Debug("sotw stream receive failed", "stream", st.id, "err", err)
				}
				return
			}
			select {
			case reqs <- in:
			case <-ctx.Done():
				in.release()
				return
			case <-s.ctx.Done():
				in.release()
				return
			}
		}
	}()

	opened := s.gate.opened
	for {
		select {
		case <-s.ctx.Done():
			return nil
		case <-opened:
			opened = nil
			for _, t := range st.types {
				st.subscribe(t)
			}
		case in, ok := <-reqs:
			if !ok {
				return nil
			}
			err := st.handle(in, opened == nil)
			in.release()
			if err != nil {
				return err
			}
		case <-st.wake:
		}
		if err := st.flush(); err != nil {
			return status.Errorf(codes.Unavailable, "%v", err)
		}
	}
}

func (st *sotwStream) poke() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// handle processes one request. open says the gate is open: until then,
// subscriptions are recorded but not registered.
func (st *sotwStream) handle(in *sotwIn, open bool) error {
	typeURL := in.typeURL
	if typeURL == "" {
		if st.defaultType == resource.AnyType {
			return status.Errorf(codes.InvalidArgument, "type URL is required for ADS")
		}
		typeURL = st.defaultType
	}
	t := st.typeOf(typeURL)
	list := t.names
	same := t.req != nil && in.sameNames(list.get())
	if !same {
		var err error
		if list, err = st.srv.lists.acquire(in); err != nil {
			return status.Errorf(codes.InvalidArgument, "%v", err)
		}
	}
	names := list.get()
	req := &discovery.DiscoveryRequest{
		VersionInfo:   in.version,
		Node:          in.node,
		ResourceNames: names,
		TypeUrl:       typeURL,
		ResponseNonce: in.nonce,
		ErrorDetail:   in.errorDetail,
	}
	// Only the first request is sure to name the node.
	if in.node != nil {
		st.node = req
	} else {
		req.Node = st.node.GetNode()
	}
	drop := func() {
		if !same {
			st.srv.lists.release(list)
		}
	}
	if err := st.srv.cb.OnStreamRequest(st.id, req); err != nil {
		drop()
		return err
	}
	if t.nonce != "" && in.nonce != t.nonce {
		// Stale: it answers a response older than the last one, which the
		// client will answer too.
		st.srv.logger.Debug("sotw request ignored: stale nonce", "stream", st.id, "type", typeURL, "nonce", in.nonce, "last", t.nonce)
		drop()
		return nil
	}
	first := t.req == nil
	t.req = req
	if !same || first {
		if !same {
			st.srv.lists.release(t.names)
			t.names = list
		}
		t.resubscribe()
		switch {
		case !open:
		case t.sub == nil:
			st.subscribe(t)
		default:
			t.sub.Update(t.wildcard, names)
		}
	}
	if !first && t.sub != nil {
		t.sub.Arm(in.errorDetail != nil)
	}
	return nil
}

// typeOf returns the stream's state of typeURL, creating it.
func (st *sotwStream) typeOf(typeURL string) *sotwType {
	for _, t := range st.types {
		if t.url == typeURL {
			return t
		}
	}
	t := &sotwType{url: typeURL, legacy: true}
	st.types = append(st.types, t)
	slices.SortFunc(st.types, func(a, b *sotwType) int { return store.CompareTypes(a.url, b.url) })
	return t
}

// resubscribe sets wildcard from names, as go-control-plane does: an empty
// list is a wildcard subscription until a request names a resource; then
// only "*" is.
func (t *sotwType) resubscribe() {
	names := t.names.get()
	if t.legacy && len(names) == 0 {
		t.wildcard = true
		return
	}
	t.legacy = false
	t.wildcard = slices.Contains(names, "*")
}

func (st *sotwStream) subscribe(t *sotwType) {
	if t.sub != nil || t.req == nil {
		return
	}
	names := t.names.get()
	if t.wildcard {
		names = nil
	}
	t.sub = st.srv.store.Subscribe(t.url, t.wildcard, names, st.poke)
}

// flush writes every response the stream's subscriptions have ready, in
// type order.
func (st *sotwStream) flush() error {
	for _, t := range st.types {
		if t.sub == nil {
			continue
		}
		r := t.sub.Take()
		if r == nil {
			continue
		}
		st.nonce++
		t.nonce = strconv.FormatInt(st.nonce, 10)
		resp := &discovery.DiscoveryResponse{VersionInfo: r.Version, Resources: r.Resources, TypeUrl: r.TypeURL, Nonce: t.nonce}
		st.srv.cb.OnStreamResponse(st.ss.Context(), st.id, t.req, resp)
		if err := st.ss.SendMsg(newSotwOut(resp, r.Body)); err != nil {
			return err
		}
	}
	return nil
}

// nameLists holds the resource name lists of requests, one copy of each
// list however many streams send it.
type nameLists struct {
	mu sync.Mutex
	m  map[string]*nameList
}

// nameList is a shared list of names; nil is the empty list.
type nameList struct {
	key   string
	names []string
	refs  int
}

func (l *nameList) get() []string {
	if l == nil {
		return nil
	}
	return l.names
}

// acquire returns the shared list of the request's names.
func (ls *nameLists) acquire(in *sotwIn) (*nameList, error) {
	if len(in.names) == 0 {
		return nil, nil
	}
	key := in.namesKey()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l := ls.m[string(key)]; l != nil {
		l.refs++
		return l, nil
	}
	names, err := in.namesList()
	if err != nil {
		return nil, err
	}
	l := &nameList{key: string(key), names: names, refs: 1}
	if ls.m == nil {
		ls.m = make(map[string]*nameList)
	}
	ls.m[l.key] = l
	return l, nil
}

func (ls *nameLists) release(l *nameList) {
	if l == nil {
		return
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l.refs--; l.refs == 0 {
		delete(ls.m, l.key)
	}
}

// handlers are go-control-plane's xDS handlers, but for the
// state-of-the-world streams of the types the store serves, which
// sotwServer serves.
type handlers struct {
	serverv3.Server
	sotw *sotwServer
}

func (h handlers) StreamAggregatedResources(st discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return h.sotw.serve(st, resource.AnyType)
}

func (h handlers) StreamClusters(st clusterservice.ClusterDiscoveryService_StreamClustersServer) error {
	return h.sotw.serve(st, resource.ClusterType)
}

func (h handlers) StreamEndpoints(st endpointservice.EndpointDiscoveryService_StreamEndpointsServer) error {
	return h.sotw.serve(st, resource.EndpointType)
}

func (h handlers) StreamListeners(st listenerservice.ListenerDiscoveryService_StreamListenersServer) error {
	return h.sotw.serve(st, resource.ListenerType)
}

func (h handlers) StreamRoutes(st routeservice.RouteDiscoveryService_StreamRoutesServer) error {
	return h.sotw.serve(st, resource.RouteType)
}
