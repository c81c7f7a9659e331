package consul

import (
	"context"
	"slices"
	"time"
)

// Shared mode watches more services than the connection budget has blocking
// queries for. Every datacenter has, besides its catalog query, two more
// blocking queries, and a fixed pool of workers (the rest of the budget)
// reads services and nodes from a queue:
//
//   - /v1/health/state/any?filter=Status != "passing" answers with the
//     checks that are not passing: a small answer in a healthy datacenter.
//     What changes between two answers is exactly the health changes, by
//     service (or by node, for node checks): those services are read
//     again, first.
//   - /v1/catalog/nodes answers when a node is added, removed or changed
//     (address, metadata). A node whose record moved past a service's data,
//     or that is gone, has that service read again, first; a new node is
//     swept (below).
//   - The catalog query answers when any service registration changes, but
//     does not say which. So every move of its index is followed by a
//     sweep of the nodes: /v1/catalog/node-services/<node> lists a node's
//     instances with their ModifyIndex. An instance newer than its
//     service's data, or an instance the data has and the node no longer
//     lists, has its service read again, first. A node whose index did not
//     move costs a request but no decoding. When there are no fewer nodes
//     than services, the sweep reads the services instead.
//   - After the catalog query failed and recovered, or its index went
//     backwards (Consul may have restarted, with indexes from scratch),
//     every service is read again.

// workKind says what a queued piece of work reads.
type workKind uint8

const (
	workService workKind = iota // /v1/health/service/<name>
	workNode                    // /v1/catalog/node-services/<name>
)

// qkey identifies queued work.
type qkey struct {
	dc   int
	kind workKind
	name string
}

func serviceWork(dc int, name string) qkey { return qkey{dc, workService, name} }

// workFor builds the work item a worker gets for k.
func (r *runner) workFor(k qkey) work {
	d := r.dcs[k.dc]
	w := work{key: k}
	switch k.kind {
	case workService:
		svc := d.services[k.name]
		w.gen, w.index = svc.gen, svc.index
	case workNode:
		w.index = d.nodeIndex[k.name]
	}
	return w
}

// enqueue asks for shared-mode work after the urgent work: sweeps and
// retries.
func (r *runner) enqueue(k qkey) { r.push(k, false) }

// enqueueUrgent asks for shared-mode work before any sweep: a new service,
// or a service known to have changed.
func (r *runner) enqueueUrgent(k qkey) { r.push(k, true) }

func (r *runner) push(k qkey, urgent bool) {
	if !r.shared {
		return
	}
	if r.inflight[k] {
		r.again[k] = true
		return
	}
	if u, ok := r.queued[k]; ok {
		if u || !urgent {
			return
		}
		r.queue = slices.DeleteFunc(r.queue, func(q qkey) bool { return q == k })
	}
	r.queued[k] = urgent
	if urgent {
		r.urgent = append(r.urgent, k)
	} else {
		r.queue = append(r.queue, k)
	}
}

// head is the next work to hand out.
func (r *runner) head() (qkey, bool) {
	switch {
	case len(r.urgent) > 0:
		return r.urgent[0], true
	case len(r.queue) > 0:
		return r.queue[0], true
	}
	return qkey{}, false
}

// pop removes and returns head.
func (r *runner) pop() qkey {
	var k qkey
	if len(r.urgent) > 0 {
		k, r.urgent = r.urgent[0], r.urgent[1:]
	} else {
		k, r.queue = r.queue[0], r.queue[1:]
	}
	delete(r.queued, k)
	return k
}

// unqueue forgets any work for k.
func (r *runner) unqueue(k qkey) {
	if _, ok := r.queued[k]; ok {
		delete(r.queued, k)
		r.urgent = slices.DeleteFunc(r.urgent, func(q qkey) bool { return q == k })
		r.queue = slices.DeleteFunc(r.queue, func(q qkey) bool { return q == k })
	}
	delete(r.inflight, k)
	delete(r.again, k)
	delete(r.retry, k)
}

// finished notes that work on k is over, and queues it again if it was
// asked for meanwhile.
func (r *runner) finished(k qkey) {
	if !r.inflight[k] {
		return
	}
	delete(r.inflight, k)
	if r.again[k] {
		delete(r.again, k)
		r.enqueueUrgent(k)
	}
}

// retryLater queues failed work again after a backoff shared by all work.
func (r *runner) retryLater(k qkey, atLeast time.Duration) {
	if !r.shared {
		return
	}
	r.retry[k] = true
	if r.retryC != nil {
		return
	}
	wait := max(r.retryOff.next(), atLeast)
	if r.retryTimer == nil {
		r.retryTimer = time.NewTimer(wait)
	} else {
		r.retryTimer.Reset(wait)
	}
	r.retryC = r.retryTimer.C
}

func (r *runner) startShared() {
	ctx, cancel := context.WithCancel(r.ctx)
	r.poolCancel = cancel
	for range r.s.budget() - 3*len(r.dcs) {
		r.goWatch(func() { r.worker(ctx) })
	}
	for i := range r.dcs {
		r.goWatch(func() { r.watchHealthState(ctx, i) })
		r.goWatch(func() { r.watchNodes(ctx, i) })
	}
	for i, d := range r.dcs {
		for _, name := range sortedKeys(d.services) {
			svc := d.services[name]
			r.stopFetcher(i, name, svc)
			r.gen++
			svc.gen = r.gen
			r.enqueue(serviceWork(i, name))
		}
	}
}

func (r *runner) stopShared() {
	r.poolCancel()
	r.poolCancel = nil
	r.urgent, r.queue = nil, nil
	clear(r.queued)
	clear(r.inflight)
	clear(r.again)
	clear(r.retry)
	r.retryC = nil
	for key, fe := range r.failing {
		if fe.work != nil && fe.work.kind == workNode {
			delete(r.failing, key)
		}
	}
	for i, d := range r.dcs {
		delete(r.failing, stateKey(d.name))
		delete(r.failing, nodesKey(d.name))
		d.nodes = nil
		clear(d.nodeIndex)
		for name, svc := range d.services {
			r.stopFetcher(i, name, svc)
			r.startWatcher(i, name, svc)
		}
	}
}

// resync reads every service of a datacenter again, decoding every answer.
func (r *runner) resync(dc int) {
	d := r.dcs[dc]
	clear(d.nodeIndex)
	for _, name := range sortedKeys(d.services) {
		d.services[name].index = 0
		r.enqueue(serviceWork(dc, name))
	}
}

func (r *runner) onState(ev stateEvent) {
	if !r.shared {
		return
	}
	d := r.dcs[ev.dc]
	delete(r.failing, stateKey(d.name))
	if ev.baseline {
		// A read in flight may have seen a check that recovered before
		// this answer, which the next answer will not mention: read those
		// services again.
		for k := range r.inflight {
			if k.dc == ev.dc && k.kind == workService {
				r.again[k] = true
			}
		}
	}
	stale := map[string]bool{}
	for _, n := range ev.services {
		stale[n] = true
	}
	for _, n := range ev.nodes {
		for s := range d.nodeSvcs[n] {
			stale[s] = true
		}
	}
	for name, svc := range d.services {
		// A non-passing check newer than the service's data, or, on the
		// first answer, data read with instances not passing that may have
		// recovered since.
		if ev.svcMax[name] > svc.index ||
			(ev.baseline && svc.fetched && svc.data.notPassing > 0) {
			stale[name] = true
		}
	}
	for n, idx := range ev.nodeMax {
		for s := range d.nodeSvcs[n] {
			if idx > d.services[s].index {
				stale[s] = true
			}
		}
	}
	for _, name := range sortedKeys(stale) {
		if d.services[name] != nil {
			r.enqueueUrgent(serviceWork(ev.dc, name))
		}
	}
}

// sweep looks for the registration that moved a datacenter's catalog
// index.
func (r *runner) sweep(dc int) {
	d := r.dcs[dc]
	if d.nodes == nil || len(d.nodes) >= len(d.services) {
		for _, name := range sortedKeys(d.services) {
			r.enqueue(serviceWork(dc, name))
		}
		return
	}
	for _, n := range sortedKeys(d.nodes) {
		r.enqueue(qkey{dc, workNode, n})
	}
}

func (r *runner) onNodes(ev nodesEvent) {
	if !r.shared {
		return
	}
	d := r.dcs[ev.dc]
	delete(r.failing, nodesKey(d.name))
	// Nodes gone, or changed since a service's data was read.
	for n, svcs := range d.nodeSvcs {
		idx, ok := ev.nodes[n]
		for s := range svcs {
			if svc := d.services[s]; !ok || idx > svc.index {
				r.enqueueUrgent(serviceWork(ev.dc, s))
			}
		}
	}
	// New nodes: a sweep started before this answer did not list them.
	// (On the first answer every node is new; registrations until then
	// moved the catalog index, whose sweep then read every service.)
	if d.nodes != nil {
		for _, n := range sortedKeys(ev.nodes) {
			if _, ok := d.nodes[n]; !ok {
				r.enqueue(qkey{ev.dc, workNode, n})
			}
		}
	}
	for n := range d.nodeIndex {
		if _, ok := ev.nodes[n]; !ok {
			delete(d.nodeIndex, n)
		}
	}
	d.nodes = ev.nodes
}

func (r *runner) onNode(ev nodeEvent) {
	d := r.dcs[ev.dc]
	k := qkey{ev.dc, workNode, ev.node}
	delete(r.failing, nodeKey(d.name, ev.node))
	r.finished(k)
	r.retryOff.reset()
	if !r.shared {
		return
	}
	d.nodeIndex[ev.node] = ev.index
	if ev.notModified {
		return
	}
	ids := make(map[string]bool, len(ev.instances))
	for _, in := range ev.instances {
		ids[in.id] = true
		if svc := d.services[in.service]; svc != nil && in.modifyIndex > svc.index {
			r.enqueueUrgent(serviceWork(ev.dc, in.service))
		}
	}
	for s := range d.nodeSvcs[ev.node] {
		for _, in := range d.services[s].data.instances {
			if in.node == ev.node && !ids[in.id] {
				r.enqueueUrgent(serviceWork(ev.dc, s))
				break
			}
		}
	}
}
