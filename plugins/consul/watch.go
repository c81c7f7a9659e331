package consul

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"
)

// The goroutines in this file query Consul and report to the runner through
// its events channel. Each runs until its context ends; the runner's
// WaitGroup waits for all of them.

// event is what a watcher or worker tells the runner.
type event interface{ isEvent() }

// catalogEvent is an answer of /v1/catalog/services.
type catalogEvent struct {
	dc       int
	index    uint64
	services map[string][]string // name → union of its instances' tags
}

// serviceEvent is an answer of /v1/health/service/<name>.
type serviceEvent struct {
	dc    int
	name  string
	gen   uint64 // the fetcher generation that asked
	index uint64
	// notModified: the answer had the index the runner already holds, so
	// data was not decoded.
	notModified bool
	data        serviceData
}

// stateEvent is an answer of /v1/health/state/any for the checks that are
// not passing, boiled down to hints for the runner.
type stateEvent struct {
	dc    int
	index uint64
	// baseline: the first answer since the watcher started, with nothing
	// to compare it with.
	baseline bool
	// services and nodes (for node checks) whose non-passing checks
	// changed since the previous answer: a check turned non-passing,
	// turned passing or went away, or changed while non-passing.
	services []string
	nodes    []string
	// svcMax and nodeMax are the highest ModifyIndex of the non-passing
	// checks per service and per node (node checks).
	svcMax  map[string]uint64
	nodeMax map[string]uint64
}

// nodesEvent is an answer of /v1/catalog/nodes.
type nodesEvent struct {
	dc    int
	index uint64
	nodes map[string]uint64 // name → ModifyIndex of the node's record
}

// nodeEvent is an answer of /v1/catalog/node-services/<node>.
type nodeEvent struct {
	dc          int
	node        string
	index       uint64
	notModified bool // as in serviceEvent
	instances   []nodeInstance
}

type nodeInstance struct {
	service, id string
	modifyIndex uint64
}

// failEvent is a failed query.
type failEvent struct {
	key  string // identifies the query in the runner's failing set
	dc   int
	work *qkey // for service and node reads
	gen  uint64
	err  error
	// rateLimited: Consul answered 429. The query is retried later; the
	// source is not reported as disconnected for it.
	rateLimited bool
	retryAfter  time.Duration
}

// tokenEvent is what the token check found: err is nil while the token is
// valid, and says why it is not.
type tokenEvent struct{ err error }

func (catalogEvent) isEvent() {}
func (serviceEvent) isEvent() {}
func (stateEvent) isEvent()   {}
func (nodesEvent) isEvent()   {}
func (nodeEvent) isEvent()    {}
func (failEvent) isEvent()    {}
func (tokenEvent) isEvent()   {}

// Keys of the runner's failing set. tokenKey sorts before every
// datacenter's keys, so a revoked token is the reason reported.
const tokenKey = "acl token"

func catalogKey(dc string) string       { return dcLabel(dc) + ": catalog" }
func stateKey(dc string) string         { return dcLabel(dc) + ": health state" }
func serviceKey(dc, name string) string { return dcLabel(dc) + ": service " + name }
func nodesKey(dc string) string         { return dcLabel(dc) + ": nodes" }
func nodeKey(dc, name string) string    { return dcLabel(dc) + ": node " + name }
func dcLabel(dc string) string {
	if dc == "" {
		return "agent datacenter"
	}
	return "datacenter " + dc
}

// emit hands ev to the runner unless ctx ends first.
func (r *runner) emit(ctx context.Context, ev event) bool {
	select {
	case r.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// watchCatalog runs blocking queries on /v1/catalog/services for one
// datacenter until ctx ends.
func (r *runner) watchCatalog(ctx context.Context, dc int) {
	name := r.dcs[dc].name
	b := r.backoff()
	var index uint64
	for {
		var out map[string][]string
		meta, err := r.s.client.get(ctx, "/v1/catalog/services",
			query{dc: name, index: index, wait: r.s.cfg.Wait}, &out)
		if err == nil && len(out) == 0 && (meta.filteredByACLs || meta.aclDeny) {
			// Consul always lists its own "consul" service, so an empty
			// catalog under a deny policy means the token reads nothing.
			err = fmt.Errorf("%w: the token can read no service (ACL default policy is deny); check token or token_file", errPermissionDenied)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !r.failed(ctx, b, failEvent{key: catalogKey(name), dc: dc, err: err}) {
				return
			}
			if _, limited := rateLimited(err); !limited {
				index = 0 // Consul may have restarted: read afresh
			}
			continue
		}
		b.reset()
		if !r.emit(ctx, catalogEvent{dc: dc, index: meta.index, services: out}) {
			return
		}
		index = nextIndex(index, meta.index)
	}
}

// watchService runs blocking queries on /v1/health/service/<name> for one
// service in one datacenter until ctx ends: a dedicated watcher.
func (r *runner) watchService(ctx context.Context, dc int, name string, gen uint64) {
	b := r.backoff()
	var index uint64
	for {
		ev, err := r.fetchService(ctx, dc, name, gen, query{index: index, wait: r.s.cfg.Wait, params: r.s.watchParams})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			k := serviceWork(dc, name)
			if !r.failed(ctx, b, failEvent{key: serviceKey(r.dcs[dc].name, name), dc: dc, work: &k, gen: gen, err: err}) {
				return
			}
			if _, limited := rateLimited(err); !limited {
				index = 0
			}
			continue
		}
		b.reset()
		if !r.emit(ctx, ev) {
			return
		}
		index = nextIndex(index, ev.index)
	}
}

// fetchService asks for one service's instances and maps them.
func (r *runner) fetchService(ctx context.Context, dc int, name string, gen uint64, q query) (serviceEvent, error) {
	d := r.dcs[dc]
	q.dc = d.name
	if q.params == nil {
		q.params = r.s.healthParams
	}
	var out []healthEntry
	meta, err := r.s.client.get(ctx, "/v1/health/service/"+url.PathEscape(name), q, &out)
	if err == nil && len(out) == 0 && meta.filteredByACLs {
		err = fmt.Errorf("%w: every instance is hidden by ACLs (the token needs node read)", errPermissionDenied)
	}
	if err != nil {
		return serviceEvent{}, err
	}
	ev := serviceEvent{dc: dc, name: name, gen: gen, index: meta.index, notModified: meta.notModified}
	if !meta.notModified {
		ev.data = r.s.mapper.convert(out, uint32(dc), d.name)
	}
	return ev, nil
}

// work is one piece of shared-mode work.
type work struct {
	key   qkey
	gen   uint64 // services: the fetcher generation
	index uint64 // the index the runner holds, 0 for none
}

// worker does the work handed to it on r.work until ctx ends.
func (r *runner) worker(ctx context.Context) {
	for {
		var w work
		select {
		case w = <-r.work:
		case <-ctx.Done():
			return
		}
		var (
			ev  event
			err error
			key string
		)
		switch w.key.kind {
		case workService:
			key = serviceKey(r.dcs[w.key.dc].name, w.key.name)
			ev, err = r.fetchService(ctx, w.key.dc, w.key.name, w.gen, query{unchanged: w.index})
		case workNode:
			key = nodeKey(r.dcs[w.key.dc].name, w.key.name)
			ev, err = r.fetchNode(ctx, w.key.dc, w.key.name, w.index)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			k := w.key
			fe := failEvent{key: key, dc: w.key.dc, work: &k, gen: w.gen, err: err}
			fe.retryAfter, fe.rateLimited = rateLimited(err)
			ev = fe
		}
		if !r.emit(ctx, ev) {
			return
		}
	}
}

// fetchNode lists one node's instances.
func (r *runner) fetchNode(ctx context.Context, dc int, node string, unchanged uint64) (nodeEvent, error) {
	var out struct {
		Services []struct {
			ID          string
			Service     string
			ModifyIndex uint64
		}
	}
	meta, err := r.s.client.get(ctx, "/v1/catalog/node-services/"+url.PathEscape(node),
		query{dc: r.dcs[dc].name, unchanged: unchanged}, &out)
	if err != nil {
		return nodeEvent{}, err
	}
	ev := nodeEvent{dc: dc, node: node, index: meta.index, notModified: meta.notModified}
	for _, s := range out.Services {
		ev.instances = append(ev.instances, nodeInstance{service: s.Service, id: s.ID, modifyIndex: s.ModifyIndex})
	}
	return ev, nil
}

// watchNodes runs blocking queries on /v1/catalog/nodes for one datacenter
// until ctx ends. Consul moves its index when a node or any service
// registration changes; the runner uses it in shared mode.
func (r *runner) watchNodes(ctx context.Context, dc int) {
	name := r.dcs[dc].name
	b := r.backoff()
	var index uint64
	for {
		var out []struct {
			Node        string
			ModifyIndex uint64
		}
		meta, err := r.s.client.get(ctx, "/v1/catalog/nodes",
			query{dc: name, index: index, wait: r.s.cfg.Wait}, &out)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !r.failed(ctx, b, failEvent{key: nodesKey(name), dc: dc, err: err}) {
				return
			}
			if _, limited := rateLimited(err); !limited {
				index = 0
			}
			continue
		}
		b.reset()
		ev := nodesEvent{dc: dc, index: meta.index, nodes: make(map[string]uint64, len(out))}
		for _, n := range out {
			ev.nodes[n.Node] = n.ModifyIndex
		}
		if !r.emit(ctx, ev) {
			return
		}
		index = nextIndex(index, meta.index)
	}
}

// watchHealthState runs blocking queries on /v1/health/state/any for one
// datacenter until ctx ends, asking only for the checks that are not
// passing: a small answer in a healthy datacenter, whose changes from one
// answer to the next are exactly the health changes. The runner uses them
// in shared mode, where services have no watcher of their own.
func (r *runner) watchHealthState(ctx context.Context, dc int) {
	name := r.dcs[dc].name
	b := r.backoff()
	params := url.Values{"filter": {`Status != "passing"`}}
	type checkKey struct{ node, id string }
	type check struct {
		service     string
		modifyIndex uint64
	}
	var (
		index uint64
		prev  map[checkKey]check // the previous answer; nil before the first
	)
	for {
		var out []struct {
			Node        string
			CheckID     string
			ServiceName string
			ModifyIndex uint64
		}
		meta, err := r.s.client.get(ctx, "/v1/health/state/any",
			query{dc: name, index: index, wait: r.s.cfg.Wait, params: params}, &out)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !r.failed(ctx, b, failEvent{key: stateKey(name), dc: dc, err: err}) {
				return
			}
			if _, limited := rateLimited(err); !limited {
				index = 0
			}
			continue
		}
		b.reset()
		ev := stateEvent{dc: dc, index: meta.index, baseline: prev == nil,
			svcMax: map[string]uint64{}, nodeMax: map[string]uint64{}}
		cur := make(map[checkKey]check, len(out))
		changed := func(c check, node string) {
			if c.service == "" {
				ev.nodes = append(ev.nodes, node)
			} else {
				ev.services = append(ev.services, c.service)
			}
		}
		for _, o := range out {
			k, c := checkKey{o.Node, o.CheckID}, check{o.ServiceName, o.ModifyIndex}
			cur[k] = c
			if c.service == "" {
				ev.nodeMax[o.Node] = max(ev.nodeMax[o.Node], c.modifyIndex)
			} else {
				ev.svcMax[c.service] = max(ev.svcMax[c.service], c.modifyIndex)
			}
			if p, ok := prev[k]; prev != nil && (!ok || p != c) {
				changed(c, o.Node)
			}
		}
		for k, p := range prev {
			if _, ok := cur[k]; !ok {
				changed(p, k.node)
			}
		}
		prev = cur
		if !r.emit(ctx, ev) {
			return
		}
		index = nextIndex(index, meta.index)
	}
}

// watchToken reads the token's own record, /v1/acl/token/self, with
// blocking queries until ctx ends. Any token may read itself, so no
// permission beyond what the source needs is asked for. Consul answers as
// soon as the token is deleted, and at the latest after retry.max (or
// wait, if shorter), so a revoked or expired token is noticed within
// retry.max although the other blocking queries are not woken by it. Only
// a 403 is reported: the other queries report Consul being unreachable,
// and a 401 says ACLs are off, with no token to revoke.
func (r *runner) watchToken(ctx context.Context) {
	b := r.backoff()
	wait := min(r.s.cfg.Retry.Max, r.s.cfg.Wait)
	var (
		index    uint64
		reported string // the error last sent to the runner; "" for none
	)
	report := func(err error) bool {
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if msg == reported {
			return true
		}
		reported = msg
		return r.emit(ctx, tokenEvent{err: err})
	}
	for {
		var out struct{}
		meta, err := r.s.client.get(ctx, "/v1/acl/token/self", query{index: index, wait: wait}, &out)
		if ctx.Err() != nil {
			return
		}
		var se *statusError
		if err == nil {
			b.reset()
			if !report(nil) {
				return
			}
			index = nextIndex(index, meta.index)
			continue
		}
		index = 0
		delay, _ := rateLimited(err)
		switch {
		case errors.As(err, &se) && se.code == http.StatusForbidden:
			err = fmt.Errorf("%w: token revoked or unknown (HTTP 403: %s); check token or token_file", errPermissionDenied, se.body)
			if !report(err) {
				return
			}
			delay = max(delay, b.next())
		case errors.As(err, &se) && se.code == http.StatusUnauthorized:
			if !report(nil) {
				return
			}
			delay = wait
		default:
			r.s.log.Debug("consul: token check failed", "err", err)
			delay = max(delay, b.next())
		}
		if !sleep(ctx, delay) {
			return
		}
	}
}

// failed reports a failed query to the runner and waits out the backoff.
// A 429 is reported as rate limited and waits at least its Retry-After. It
// returns false when ctx ended.
func (r *runner) failed(ctx context.Context, b *backoff, fe failEvent) bool {
	fe.retryAfter, fe.rateLimited = rateLimited(fe.err)
	if !r.emit(ctx, fe) {
		return false
	}
	return sleep(ctx, max(b.next(), fe.retryAfter))
}

// backoff is a capped exponential backoff with jitter: the n-th delay in a
// row is drawn from [d/2, d), d = initial·2ⁿ capped at max.
type backoff struct {
	initial, max time.Duration
	n            int
}

func (r *runner) backoff() *backoff {
	return &backoff{initial: r.s.cfg.Retry.Initial, max: r.s.cfg.Retry.Max}
}

func (b *backoff) next() time.Duration {
	d := b.initial
	for i := 0; i < b.n && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	if b.n < 62 {
		b.n++
	}
	return d/2 + rand.N(d/2+1)
}

func (b *backoff) reset() { b.n = 0 }

// sleep waits for d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// isPermissionDenied reports whether err says the token may not read.
func isPermissionDenied(err error) bool { return errors.Is(err, errPermissionDenied) }
