package xds

import (
	"context"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// gate holds back every watch and fetch until Open is called, so that no
// client is served a partial view before every source has delivered its
// first full state. Watches made while closed are created on the inner
// cache when the gate opens.
type gate struct {
	inner cache.Cache

	mu      sync.Mutex
	open    bool
	opened  chan struct{}
	pending map[*pendingWatch]struct{}
}

type pendingWatch struct {
	create func() (func(), error)
	cancel func()
	done   bool
}

func newGate(inner cache.Cache) *gate {
	return &gate{inner: inner, opened: make(chan struct{}), pending: map[*pendingWatch]struct{}{}}
}

// Open lets every held watch through. It is safe to call more than once.
func (g *gate) Open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open {
		return
	}
	g.open = true
	close(g.opened)
	for p := range g.pending {
		cancel, err := p.create()
		if err == nil {
			p.cancel = cancel
		}
	}
	clear(g.pending)
}

func (g *gate) hold(create func() (func(), error)) (func(), error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open {
		return create()
	}
	p := &pendingWatch{create: create}
	g.pending[p] = struct{}{}
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		delete(g.pending, p)
		if p.cancel != nil && !p.done {
			p.done = true
			p.cancel()
		}
	}, nil
}

func (g *gate) CreateWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response) (func(), error) {
	return g.hold(func() (func(), error) { return g.inner.CreateWatch(req, sub, ch) })
}

func (g *gate) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, ch chan cache.DeltaResponse) (func(), error) {
	return g.hold(func() (func(), error) { return g.inner.CreateDeltaWatch(req, sub, ch) })
}

func (g *gate) Fetch(ctx context.Context, req *cache.Request) (cache.Response, error) {
	select {
	case <-g.opened:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.inner.Fetch(ctx, req)
}

var _ cache.Cache = (*gate)(nil)
