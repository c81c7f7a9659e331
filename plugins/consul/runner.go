package consul

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// runner is one Run of a Source. Its loop goroutine owns every field below
// except events, work and wg; the watchers and workers it starts only
// query Consul and report back on events.
//
// How services are watched (README.md, "Connections to Consul"):
//
//   - Every datacenter has one blocking query on /v1/catalog/services: it
//     says which services exist.
//   - Dedicated mode, while the selected services (over all datacenters)
//     fit the connection budget less one catalog query per datacenter:
//     every service has its own blocking query on /v1/health/service.
//   - Shared mode, beyond that: see queue.go.
//   - With a token, one more blocking query checks that the token is still
//     valid (watchToken); the budget above is max_connections less it.
//
// Either way at most max_connections requests, and so connections, are open.
type runner struct {
	s      *Source
	up     chan<- sdk.Update
	events chan event
	work   chan work
	wg     sync.WaitGroup

	ctx context.Context // of the loop; watchers derive from it
	dcs []*dcState
	gen uint64 // last fetcher generation handed out

	shared     bool
	poolCancel context.CancelFunc // shared mode: stops workers and shared watchers
	urgent     []qkey             // shared mode: work to do first, in order
	queue      []qkey             // shared mode: sweep work, in order
	queued     map[qkey]bool      // in urgent (true) or queue (false)
	inflight   map[qkey]bool
	again      map[qkey]bool // dirtied while in flight
	retry      map[qkey]bool // failed; queued again when retryC fires
	retryC     <-chan time.Time
	retryTimer *time.Timer
	retryOff   *backoff

	failing  map[string]failEvent // failing queries by key
	status   sdk.Status           // last sent
	lastSent time.Time            // when anything was last sent
	needFull bool                 // the next data update must be a full state
	sentFull bool                 // a full state went out

	changes    sdk.Changes       // the clusters as last sent
	names      map[string]string // service → cluster name
	dirty      map[string]bool   // services whose cluster may have changed
	firstDirty time.Time
	flushTimer *time.Timer
	flushC     <-chan time.Time
}

// dcState is what the runner knows of one datacenter.
type dcState struct {
	name      string // as configured; "" is the agent's own
	catalogOK bool   // the last catalog query succeeded
	// catalogFailed: the catalog query failed since its last success.
	catalogFailed bool
	services      map[string]*svcState
	// nodeSvcs maps a node to the services with instances on it, from
	// the services' data.
	nodeSvcs map[string]map[string]bool
	// catalogAt is the index of the last catalog answer.
	catalogAt uint64
	// Shared mode: the last /v1/catalog/nodes answer (name → index of the
	// node's record; nil before the first), and the index of the last
	// /v1/catalog/node-services answer per node.
	nodes     map[string]uint64
	nodeIndex map[string]uint64
}

// svcState is one selected service in one datacenter.
type svcState struct {
	gen     uint64 // generation of the fetcher whose answers count
	cancel  context.CancelFunc
	fetched bool   // data holds an answer
	ok      bool   // the last query succeeded
	index   uint64 // index of data; 0 forces the next read to decode
	data    serviceData
}

func newRunner(s *Source, up chan<- sdk.Update) *runner {
	r := &runner{
		s:        s,
		up:       up,
		events:   make(chan event, 64),
		work:     make(chan work),
		queued:   map[qkey]bool{},
		inflight: map[qkey]bool{},
		again:    map[qkey]bool{},
		retry:    map[qkey]bool{},
		failing:  map[string]failEvent{},
		needFull: true,
		names:    map[string]string{},
		dirty:    map[string]bool{},
	}
	r.retryOff = r.backoff()
	dcs := s.cfg.Datacenters
	if len(dcs) == 0 {
		dcs = []string{""}
	}
	for _, name := range dcs {
		r.dcs = append(r.dcs, &dcState{
			name:      name,
			services:  map[string]*svcState{},
			nodeSvcs:  map[string]map[string]bool{},
			nodeIndex: map[string]uint64{},
		})
	}
	return r
}

// goWatch starts f on its own goroutine, owned by r.wg.
func (r *runner) goWatch(f func()) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f()
	}()
}

func (r *runner) loop(ctx context.Context) {
	r.ctx = ctx
	for i := range r.dcs {
		r.goWatch(func() { r.watchCatalog(ctx, i) })
	}
	if r.s.checkToken {
		r.goWatch(func() { r.watchToken(ctx) })
	}
	defer func() {
		if r.flushTimer != nil {
			r.flushTimer.Stop()
		}
		if r.retryTimer != nil {
			r.retryTimer.Stop()
		}
	}()
	for {
		var workC chan work
		var next work
		if k, ok := r.head(); ok {
			workC, next = r.work, r.workFor(k)
		}
		select {
		case <-ctx.Done():
			return
		case ev := <-r.events:
			r.handle(ev)
		case workC <- next:
			r.inflight[r.pop()] = true
		case <-r.flushC:
			r.flushC = nil
			if !r.flush(ctx) {
				return
			}
		case <-r.retryC:
			r.retryC = nil
			for k := range r.retry {
				r.enqueue(k)
			}
			clear(r.retry)
		}
		if !r.settle(ctx) {
			return
		}
	}
}

func (r *runner) handle(ev event) {
	switch ev := ev.(type) {
	case catalogEvent:
		r.onCatalog(ev)
	case serviceEvent:
		r.onService(ev)
	case stateEvent:
		r.onState(ev)
	case nodesEvent:
		r.onNodes(ev)
	case nodeEvent:
		r.onNode(ev)
	case failEvent:
		r.onFail(ev)
	case tokenEvent:
		r.onToken(ev)
	}
}

// onToken notes what the token check found. A revoked token is reported
// at once, though the blocking queries (not woken by it) keep answering
// until their wait runs out: nothing served is dropped, and once the token
// is valid again a full state goes out.
func (r *runner) onToken(ev tokenEvent) {
	if ev.err == nil {
		delete(r.failing, tokenKey)
		return
	}
	r.s.log.Debug("consul: token check failed", "err", ev.err)
	r.failing[tokenKey] = failEvent{key: tokenKey, dc: -1, err: ev.err} // no datacenter's
	r.needFull = true
}

func (r *runner) onCatalog(ev catalogEvent) {
	d := r.dcs[ev.dc]
	delete(r.failing, catalogKey(d.name))
	// After a failure, or when the index went backwards, Consul may have
	// restarted without its state: blocking queries still waiting on old
	// indexes would not answer before wait runs out. Read everything
	// afresh, and send a full state once done.
	reset := d.catalogFailed || ev.index < d.catalogAt
	moved := d.catalogAt != 0 && ev.index != d.catalogAt
	d.catalogOK, d.catalogFailed, d.catalogAt = true, false, ev.index
	if reset && r.sentFull {
		r.needFull = true
	}

	for name, svc := range d.services {
		if tags, ok := ev.services[name]; ok && r.s.selected(name, tags) {
			continue
		}
		r.stopFetcher(ev.dc, name, svc)
		r.setData(d, name, svc, serviceData{})
		delete(d.services, name)
		r.markDirty(name)
	}
	for _, name := range sortedKeys(ev.services) {
		if _, ok := d.services[name]; ok || !r.s.selected(name, ev.services[name]) {
			continue
		}
		svc := &svcState{}
		d.services[name] = svc
		if r.shared {
			r.gen++
			svc.gen = r.gen
			r.enqueueUrgent(serviceWork(ev.dc, name))
		}
	}

	if r.setMode() {
		return // the new mode started fetchers for every service
	}
	if !r.shared {
		for name, svc := range d.services {
			if reset && svc.cancel != nil {
				r.stopFetcher(ev.dc, name, svc)
				svc.ok = false // not synced until read again
			}
			if svc.cancel == nil {
				r.startWatcher(ev.dc, name, svc)
			}
		}
		return
	}
	switch {
	case reset:
		r.resync(ev.dc)
	case moved:
		r.sweep(ev.dc)
	}
}

func (r *runner) onService(ev serviceEvent) {
	d := r.dcs[ev.dc]
	svc := d.services[ev.name]
	if svc == nil || svc.gen != ev.gen {
		return // removed, or answered for a fetcher since replaced
	}
	delete(r.failing, serviceKey(d.name, ev.name))
	r.finished(serviceWork(ev.dc, ev.name))
	r.retryOff.reset()
	svc.ok = true
	if ev.notModified && svc.fetched {
		return
	}
	if len(ev.data.unusable) > 0 && !slices.Equal(ev.data.unusable, svc.data.unusable) {
		r.s.log.Warn("consul: instances skipped: address is not an IP or port is out of range",
			"service", ev.name, "datacenter", d.name, "instances", ev.data.unusable)
	}
	if !svc.fetched || !reflect.DeepEqual(svc.data, ev.data) {
		r.markDirty(ev.name)
	}
	r.setData(d, ev.name, svc, ev.data)
	svc.fetched, svc.index = true, ev.index
}

// setData replaces a service's data and keeps the node index in step.
func (r *runner) setData(d *dcState, name string, svc *svcState, data serviceData) {
	if !slices.Equal(svc.data.nodes, data.nodes) {
		for _, n := range svc.data.nodes {
			delete(d.nodeSvcs[n], name)
			if len(d.nodeSvcs[n]) == 0 {
				delete(d.nodeSvcs, n)
			}
		}
		for _, n := range data.nodes {
			if d.nodeSvcs[n] == nil {
				d.nodeSvcs[n] = map[string]bool{}
			}
			d.nodeSvcs[n][name] = true
		}
	}
	svc.data = data
}

func (r *runner) onFail(ev failEvent) {
	d := r.dcs[ev.dc]
	if ev.work != nil {
		k := *ev.work
		if k.kind == workService {
			svc := d.services[k.name]
			if svc == nil || svc.gen != ev.gen {
				return
			}
			if !ev.rateLimited {
				svc.ok = false
			}
		}
		r.finished(k)
		r.retryLater(k, ev.retryAfter)
	}
	if ev.rateLimited {
		r.s.log.Debug("consul: rate limited, backing off", "query", ev.key)
		return
	}
	if ev.key == catalogKey(d.name) {
		d.catalogOK, d.catalogFailed = false, true
	}
	if _, ok := r.failing[ev.key]; !ok {
		r.s.log.Debug("consul: query failed", "query", ev.key, "err", ev.err)
	}
	r.failing[ev.key] = ev
	r.needFull = true
}

// dedicatedLimit is how many services get their own blocking query.
func (r *runner) dedicatedLimit() int { return r.s.budget() - len(r.dcs) }

// setMode switches between dedicated and shared mode when the number of
// services calls for it, with some hysteresis. It reports whether it did.
func (r *runner) setMode() bool {
	total := 0
	for _, d := range r.dcs {
		total += len(d.services)
	}
	limit := r.dedicatedLimit()
	want := total > limit
	if r.shared {
		want = total > limit*3/4
	}
	if want == r.shared {
		return false
	}
	r.s.log.Info("consul: switching watch mode", "services", total, "shared", want)
	r.shared = want
	if want {
		r.startShared()
	} else {
		r.stopShared()
	}
	return true
}

// startWatcher gives a service its own blocking query.
func (r *runner) startWatcher(dc int, name string, svc *svcState) {
	ctx, cancel := context.WithCancel(r.ctx)
	r.gen++
	svc.gen, svc.cancel = r.gen, cancel
	gen := r.gen
	r.goWatch(func() { r.watchService(ctx, dc, name, gen) })
}

// stopFetcher stops whatever fetches a service; answers already on their
// way are dropped by generation.
func (r *runner) stopFetcher(dc int, name string, svc *svcState) {
	if svc.cancel != nil {
		svc.cancel()
		svc.cancel = nil
	}
	svc.gen = 0
	r.unqueue(serviceWork(dc, name))
	delete(r.failing, serviceKey(r.dcs[dc].name, name))
}

// markDirty notes that a service's cluster may have changed and arms the
// coalescing timer: the update goes out once nothing changed for Coalesce,
// or 10×Coalesce after the first change, whichever comes first.
func (r *runner) markDirty(name string) {
	now := time.Now()
	if len(r.dirty) == 0 {
		r.firstDirty = now
	}
	r.dirty[name] = true
	d := min(r.s.cfg.Coalesce, r.firstDirty.Add(10*r.s.cfg.Coalesce).Sub(now))
	d = max(d, 0)
	if r.flushTimer == nil {
		r.flushTimer = time.NewTimer(d)
	} else {
		r.flushTimer.Reset(d)
	}
	r.flushC = r.flushTimer.C
}

// synced reports whether everything known of a datacenter has been read
// and its last queries succeeded.
func (r *runner) synced(dc int) bool {
	d := r.dcs[dc]
	if !d.catalogOK {
		return false
	}
	for name, svc := range d.services {
		k := serviceWork(dc, name)
		_, queued := r.queued[k]
		if !svc.fetched || !svc.ok || queued || r.inflight[k] {
			return false
		}
	}
	return true
}

// failingIn reports whether any query of a datacenter is failing.
func (r *runner) failingIn(dc int) bool {
	for _, fe := range r.failing {
		if fe.dc == dc {
			return true
		}
	}
	return false
}

// settle sends what the state calls for: the full state when it is due
// and ready, else a status change. It returns false when ctx ended.
func (r *runner) settle(ctx context.Context) bool {
	if r.needFull && r.readyForFull() {
		return r.sendFull(ctx)
	}
	want := r.currentStatus()
	if want.State == sdk.Connected && r.needFull {
		return true // Connected goes out with the full state
	}
	if want == r.status {
		if r.sentFull && time.Since(r.lastSent) >= r.s.heartbeatEvery() {
			return r.send(ctx, sdk.Update{Status: &want}) // progress: see MaxSilence
		}
		return true
	}
	r.logStatus(want)
	r.status = want
	return r.send(ctx, sdk.Update{Status: &want})
}

// readyForFull: the first full state waits until every datacenter has been
// read or has failed, and one has been read; a later one (after a failure)
// waits until everything is read and nothing fails.
func (r *runner) readyForFull() bool {
	if r.sentFull && len(r.failing) > 0 {
		return false
	}
	anySynced := false
	for i := range r.dcs {
		s := r.synced(i)
		anySynced = anySynced || s
		if !s && (r.sentFull || !r.failingIn(i)) {
			return false
		}
	}
	return anySynced
}

func (r *runner) currentStatus() sdk.Status {
	if len(r.failing) == 0 {
		return sdk.Status{State: sdk.Connected}
	}
	// The first failing query by key names the reason: a datacenter's
	// catalog query sorts before its other queries. The reason leaves out
	// how many fail, so that it changes only when the cause does.
	first := ""
	for k := range r.failing {
		if first == "" || k < first {
			first = k
		}
	}
	return sdk.Status{State: sdk.Disconnected, Reason: fmt.Sprintf("consul %s: %v", first, r.failing[first].err)}
}

func (r *runner) logStatus(st sdk.Status) {
	switch {
	case st.State == sdk.Connected:
		r.s.log.Info("consul: connected")
	case r.anyPermissionDenied():
		r.s.log.Error("consul: permission denied; serving the last good state",
			"reason", st.Reason, "failing_queries", len(r.failing))
	default:
		r.s.log.Warn("consul: disconnected; serving the last good state",
			"reason", st.Reason, "failing_queries", len(r.failing))
	}
}

func (r *runner) anyPermissionDenied() bool {
	for _, fe := range r.failing {
		if isPermissionDenied(fe.err) {
			return true
		}
	}
	return false
}

// sendFull sends every cluster as a full state, with the status.
func (r *runner) sendFull(ctx context.Context) bool {
	services := map[string]bool{}
	for _, d := range r.dcs {
		for name := range d.services {
			services[name] = true
		}
	}
	owner := map[string]string{}
	u := sdk.Update{Full: true, Clusters: []sdk.Cluster{}}
	for _, name := range sortedKeys(services) {
		c, ok := r.cluster(name)
		if !ok {
			continue
		}
		if o, dup := owner[c.Name]; dup {
			r.s.log.Error("consul: cluster_name gives two services the same cluster; serving the first",
				"cluster", c.Name, "service", name, "first", o)
			continue
		}
		owner[c.Name] = name
		u.Clusters = append(u.Clusters, c)
	}
	clear(r.dirty)
	r.flushC = nil
	st := r.currentStatus()
	r.needFull = st.State != sdk.Connected
	r.sentFull = true
	if st != r.status {
		r.logStatus(st)
		r.status = st
		u.Status = &st
	}
	r.s.log.Debug("consul: full state", "clusters", len(u.Clusters))
	r.changes.Sent(u)
	return r.send(ctx, u)
}

// flush sends the clusters of dirty services that changed since they were
// last sent. Before the first full state it only waits for it.
func (r *runner) flush(ctx context.Context) bool {
	if !r.sentFull {
		return true // the full state will carry it
	}
	var u sdk.Update
	for _, name := range sortedKeys(r.dirty) {
		if c, ok := r.cluster(name); ok {
			r.changes.Change(&u, c.Name, &c)
		} else {
			r.changes.Change(&u, r.clusterName(name), nil)
		}
	}
	clear(r.dirty)
	if len(u.Clusters) == 0 && len(u.RemovedClusters) == 0 {
		return true
	}
	r.changes.Sent(u)
	return r.send(ctx, u)
}

// cluster builds a service's cluster from every datacenter that has it. ok
// is false when no datacenter has an instance matching the selection.
func (r *runner) cluster(service string) (sdk.Cluster, bool) {
	present := false
	var parts [][]sdk.Endpoint
	for _, d := range r.dcs {
		svc := d.services[service]
		if svc == nil || !svc.fetched || !svc.data.present {
			continue
		}
		present = true
		parts = append(parts, svc.data.endpoints)
	}
	if !present {
		return sdk.Cluster{}, false
	}
	return sdk.Cluster{
		Name:      r.clusterName(service),
		Endpoints: mergeEndpoints(parts),
		Overlay:   r.s.overlays[service],
	}, true
}

func (r *runner) clusterName(service string) string {
	if n, ok := r.names[service]; ok {
		return n
	}
	n := r.s.clusterName(service)
	r.names[service] = n
	return n
}

func (r *runner) send(ctx context.Context, u sdk.Update) bool {
	select {
	case r.up <- u:
		r.lastSent = time.Now()
		return true
	case <-ctx.Done():
		return false
	}
}
