package store

import (
	"context"
	"maps"
	"sync"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

type responseKind uint8

const (
	// partial responses carry the resources whose version changed for the
	// client; the client keeps the others.
	partial responseKind = iota
	// fullWildcard responses carry every resource of the type.
	fullWildcard
	// fullNamed responses carry every subscribed resource that exists.
	fullNamed
	// fetched responses answer a REST request for named resources.
	fetched
)

// response is a SotW or REST response. It is built at notification time from
// shared, immutable parts; everything per client is computed lazily in the
// stream's goroutine, once.
type response struct {
	req  *cachev3.Request
	view *typeView
	kind responseKind
	// entries are the resources to send (partial, fetched); computed lazily
	// from subscribed for fullNamed.
	entries    []*entry
	subscribed map[string]struct{}
	// base is what the client had before this response (partial): the
	// subscription's own map, updated in place when the response is sent.
	base map[string]string
	// mu guards base against the store's readers; it is the store's lock.
	mu *sync.RWMutex
	// version overrides the type version (fetched).
	version string
	ctx     context.Context

	resOnce   sync.Once
	resources []*anypb.Any

	retOnce  sync.Once
	returned map[string]string
}

var _ cachev3.Response = (*response)(nil)

func (r *response) build() {
	r.resOnce.Do(func() {
		switch r.kind {
		case fullWildcard:
			r.resources = r.view.Anys()
		case fullNamed:
			r.entries = r.view.selectNames(r.subscribed)
			r.resources = anysOf(r.entries)
		default:
			r.resources = anysOf(r.entries)
		}
	})
}

// GetDiscoveryResponse returns a new DiscoveryResponse on every call (the
// server writes the nonce into it); the resources in it are shared.
func (r *response) GetDiscoveryResponse() (*discovery.DiscoveryResponse, error) {
	r.build()
	return &discovery.DiscoveryResponse{
		VersionInfo: r.GetResponseVersion(),
		Resources:   r.resources,
		TypeUrl:     r.view.typeURL,
	}, nil
}

func (r *response) GetRequest() *discovery.DiscoveryRequest { return r.req }

// GetVersion returns the response version.
//
// Deprecated: use GetResponseVersion.
func (r *response) GetVersion() (string, error) { return r.GetResponseVersion(), nil }

func (r *response) GetResponseVersion() string {
	if r.kind == fetched {
		return r.version
	}
	return r.view.Version()
}

// GetReturnedResources returns what the client has once it receives the
// response: resource name to version.
func (r *response) GetReturnedResources() map[string]string {
	r.retOnce.Do(func() {
		switch r.kind {
		case fullWildcard:
			r.returned = r.view.returnedAll()
		case partial:
			r.returned = updateReturned(r.mu, r.base, r.entries, nil)
		default:
			r.build()
			r.returned = returnedAfter(r.view, nil, r.entries, nil)
		}
	})
	return r.returned
}

func (r *response) GetContext() context.Context {
	if r.ctx != nil {
		return r.ctx
	}
	return context.Background()
}

// deltaResponse is a delta response; like response, its per-client parts are
// computed lazily, once.
type deltaResponse struct {
	req     *cachev3.DeltaRequest
	view    *typeView
	set     []*entry
	removed []string
	base    map[string]string // as in response
	mu      *sync.RWMutex

	resOnce   sync.Once
	resources []*discovery.Resource

	retOnce  sync.Once
	returned map[string]string
}

var _ cachev3.DeltaResponse = (*deltaResponse)(nil)

// GetDeltaDiscoveryResponse returns a new DeltaDiscoveryResponse on every
// call; the resources in it are shared.
func (r *deltaResponse) GetDeltaDiscoveryResponse() (*discovery.DeltaDiscoveryResponse, error) {
	r.resOnce.Do(func() {
		r.resources = make([]*discovery.Resource, len(r.set))
		for i, e := range r.set {
			r.resources[i] = e.res
		}
	})
	return &discovery.DeltaDiscoveryResponse{
		SystemVersionInfo: r.GetResponseVersion(),
		Resources:         r.resources,
		RemovedResources:  r.removed,
		TypeUrl:           r.view.typeURL,
	}, nil
}

func (r *deltaResponse) GetDeltaRequest() *discovery.DeltaDiscoveryRequest { return r.req }

// GetSystemVersion returns the type version.
//
// Deprecated: use GetResponseVersion.
func (r *deltaResponse) GetSystemVersion() (string, error) { return r.GetResponseVersion(), nil }

func (r *deltaResponse) GetResponseVersion() string { return r.view.Version() }

// GetNextVersionMap is GetReturnedResources.
//
// Deprecated: use GetReturnedResources.
func (r *deltaResponse) GetNextVersionMap() map[string]string { return r.GetReturnedResources() }

// GetReturnedResources returns what the client has once it receives the
// response: resource name to version.
func (r *deltaResponse) GetReturnedResources() map[string]string {
	r.retOnce.Do(func() {
		if len(r.base) == 0 {
			r.returned = returnedAfter(r.view, nil, r.set, r.removed)
			return
		}
		r.returned = updateReturned(r.mu, r.base, r.set, r.removed)
	})
	return r.returned
}

func (r *deltaResponse) GetContext() context.Context { return context.Background() }

// updateReturned records sent and removed in base, the subscription's own
// map, and returns it. Copying a client's map for every response would cost
// O(subscriptions) per client per change; updating it costs O(changes).
//
// This is safe because go-control-plane calls GetReturnedResources only for
// a response it actually sends, in the stream's goroutine — the only
// goroutine that otherwise touches the map, and only between watches. A
// response the server drops (a newer request of the same type arrived first)
// leaves base alone. The store reads base of live watches under its lock,
// so the update takes the lock too.
func updateReturned(mu *sync.RWMutex, base map[string]string, sent []*entry, removed []string) map[string]string {
	if base == nil {
		base = make(map[string]string, len(sent))
	}
	mu.Lock()
	defer mu.Unlock()
	for _, e := range sent {
		base[e.name] = e.version
	}
	for _, name := range removed {
		delete(base, name)
	}
	return base
}

// returnedAfter returns a new map: base, plus the versions of sent, minus
// removed. base is not modified.
func returnedAfter(view *typeView, base map[string]string, sent []*entry, removed []string) map[string]string {
	if len(base) == 0 && len(removed) == 0 && len(sent) == len(view.entries) && len(sent) > 0 {
		// Everything sent to a client that had nothing: the view's map is
		// already built, and cloning it beats inserting name by name.
		return view.returnedAll()
	}
	var out map[string]string
	if base == nil {
		out = make(map[string]string, len(sent))
	} else {
		out = maps.Clone(base)
	}
	for _, e := range sent {
		out[e.name] = e.version
	}
	for _, name := range removed {
		delete(out, name)
	}
	return out
}
