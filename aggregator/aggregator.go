// Package aggregator owns every source's state and merges it into one model.
//
// Sources (through the plugin host) call Apply with full states and change
// sets. Each item is validated on the way in; a bad item is rejected alone,
// logged with its source, cluster and endpoint, and counted. A builder
// goroutine (Run) merges what changed and hands a Change to the publisher:
// only clusters and resources whose merged value changed are in it, so a
// one-endpoint change costs one cluster, never the world.
package aggregator

import (
	"cmp"
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// Options configure an Aggregator.
type Options struct {
	Logger *slog.Logger
	// Sources are the names of every configured source. Nothing is published
	// until each has delivered its first full state, or ReadyTimeout passed.
	Sources []string
	// Debounce is the minimum time between two builds; changes arriving
	// within it are merged into one build. The first change after a quiet
	// period is built at once. 0 builds on every change.
	Debounce time.Duration
	// ReadyTimeout bounds the wait for first full states; 0 does not wait.
	ReadyTimeout time.Duration
	// CheckOverlay validates a cluster overlay; a cluster whose overlay
	// fails is rejected (its previous version from that source is kept).
	CheckOverlay func(overlay []byte) error
	// Publish receives each build's changes, in order, from Run's goroutine.
	Publish func(ctx context.Context, c *Change)
}

// Aggregator merges sources. Create it with New, feed it with Apply, and run
// its builder with Run.
type Aggregator struct {
	opts Options

	mu        sync.Mutex
	sources   map[string]*sourceState
	dirty     map[string]struct{} // cluster names
	dirtyRes  map[sdk.ResourceRef]struct{}
	rejected  map[string]uint64   // by reason
	waiting   map[string]struct{} // sources without a first full state
	readyCh   chan struct{}
	readyOnce sync.Once
	trigger   chan struct{}

	// Owned by Run's goroutine.
	merged    map[string]*Cluster
	resources map[sdk.ResourceRef]*Resource
}

type sourceState struct {
	clusters  map[string]*sdk.Cluster
	resources map[sdk.ResourceRef]*sdk.Resource
	status    sdk.Status
	full      bool
}

// New returns an Aggregator.
func New(opts Options) *Aggregator {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Aggregator{
		opts:      opts,
		sources:   map[string]*sourceState{},
		dirty:     map[string]struct{}{},
		dirtyRes:  map[sdk.ResourceRef]struct{}{},
		rejected:  map[string]uint64{},
		waiting:   map[string]struct{}{},
		readyCh:   make(chan struct{}),
		trigger:   make(chan struct{}, 1),
		merged:    map[string]*Cluster{},
		resources: map[sdk.ResourceRef]*Resource{},
	}
	for _, s := range opts.Sources {
		a.sources[s] = newSourceState()
		a.waiting[s] = struct{}{}
	}
	return a
}

func newSourceState() *sourceState {
	return &sourceState{clusters: map[string]*sdk.Cluster{}, resources: map[sdk.ResourceRef]*sdk.Resource{}}
}

// Ready is closed once every source delivered its first full state (or the
// ready timeout passed) and the first build was published.
func (a *Aggregator) Ready() <-chan struct{} { return a.readyCh }

// Rejected returns how many items were rejected, by reason.
func (a *Aggregator) Rejected() map[string]uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.rejected)
}

// SourceStatus is a source's last reported status and whether it has
// delivered a full state.
type SourceStatus struct {
	Status   sdk.Status
	Full     bool
	Clusters int
}

// SourceStatuses returns the status of every source.
func (a *Aggregator) SourceStatuses() map[string]SourceStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]SourceStatus, len(a.sources))
	for n, s := range a.sources {
		out[n] = SourceStatus{Status: s.status, Full: s.full, Clusters: len(s.clusters)}
	}
	return out
}

// Apply takes one update from source. It validates the update's items,
// records them, and wakes the builder; it does not wait for the build.
func (a *Aggregator) Apply(source string, u sdk.Update) {
	v := a.validate(source, &u) // outside the lock: it is the costly part

	a.mu.Lock()
	s := a.sources[source]
	if s == nil {
		s = newSourceState()
		a.sources[source] = s
	}
	for _, r := range v.rejected {
		a.rejected[r.reason]++
	}
	if u.Status != nil {
		s.status = *u.Status
	}
	var changed bool
	if u.Full {
		changed = a.replaceAll(source, s, v)
	} else {
		changed = a.applyChanges(s, v, u.RemovedClusters, u.RemovedResources)
	}
	a.mu.Unlock()

	for _, r := range v.rejected {
		a.opts.Logger.Warn("rejected item", "reason", r.reason, "detail", r.msg)
	}
	if changed {
		select {
		case a.trigger <- struct{}{}:
		default:
		}
	}
}

func quote(s string) string { return `"` + s + `"` }

// validated is what of an update passed validation.
type validated struct {
	clusters  []*sdk.Cluster
	resources []*sdk.Resource
	// badClusters names clusters whose item was rejected: their last good
	// state is kept.
	badClusters []string
	rejected    []rejection
}

// validate checks every item of u, keeping the first of clusters sent
// twice.
func (a *Aggregator) validate(source string, u *sdk.Update) validated {
	var v validated
	v.clusters = make([]*sdk.Cluster, 0, len(u.Clusters))
	seen := make(map[string]struct{}, len(u.Clusters))
	for i := range u.Clusters {
		c, rej, ok := validateCluster(source, &u.Clusters[i], a.opts.CheckOverlay)
		v.rejected = append(v.rejected, rej...)
		if !ok {
			continue
		}
		if _, dup := seen[c.Name]; dup {
			v.rejected = append(v.rejected, rejection{ReasonDuplicateCluster, "source " + quote(source) + ": cluster " + quote(c.Name) + " sent twice in one update; the first is used"})
			continue
		}
		seen[c.Name] = struct{}{}
		v.clusters = append(v.clusters, c)
	}
	for i := range u.Clusters {
		if _, ok := seen[u.Clusters[i].Name]; !ok && u.Clusters[i].Name != "" {
			v.badClusters = append(v.badClusters, u.Clusters[i].Name)
		}
	}
	v.resources = make([]*sdk.Resource, 0, len(u.Resources))
	for i := range u.Resources {
		r, rej := validateResource(source, &u.Resources[i])
		if rej != nil {
			v.rejected = append(v.rejected, *rej)
			continue
		}
		v.resources = append(v.resources, &r)
	}
	return v
}

// replaceAll makes v, a full state, the state of source s, keeping the last
// good state of its rejected clusters, and marks what changed dirty. The
// source's first full state also ends its wait. a.mu is held.
func (a *Aggregator) replaceAll(source string, s *sourceState, v validated) bool {
	next := make(map[string]*sdk.Cluster, len(v.clusters))
	for _, c := range v.clusters {
		next[c.Name] = c
	}
	for _, name := range v.badClusters { // rejected now: keep the last good one
		if old, ok := s.clusters[name]; ok {
			next[name] = old
		}
	}
	nextRes := make(map[sdk.ResourceRef]*sdk.Resource, len(v.resources))
	for _, r := range v.resources {
		nextRes[refOf(r)] = r
	}
	changed := replace(&s.clusters, next, (*sdk.Cluster).Equal, a.dirty)
	changed = replace(&s.resources, nextRes, resourceEqual, a.dirtyRes) || changed
	if !s.full {
		s.full = true
		delete(a.waiting, source)
		changed = true
	}
	return changed
}

// applyChanges applies v, a change set, and the removals to source s, and
// marks what changed dirty. a.mu is held.
func (a *Aggregator) applyChanges(s *sourceState, v validated, removed []string, removedRes []sdk.ResourceRef) bool {
	changed := false
	for _, c := range v.clusters {
		changed = upsert(s.clusters, c.Name, c, (*sdk.Cluster).Equal, a.dirty) || changed
	}
	for _, name := range removed {
		changed = remove(s.clusters, name, a.dirty) || changed
	}
	for _, r := range v.resources {
		changed = upsert(s.resources, refOf(r), r, resourceEqual, a.dirtyRes) || changed
	}
	for _, ref := range removedRes {
		changed = remove(s.resources, ref, a.dirtyRes) || changed
	}
	return changed
}

func refOf(r *sdk.Resource) sdk.ResourceRef { return sdk.ResourceRef{TypeURL: r.TypeURL, Name: r.Name} }

func resourceEqual(a, b *sdk.Resource) bool { return string(a.Value) == string(b.Value) }

// replace sets *cur to next and marks dirty every key the two do not hold
// equal values for. It reports whether there was any.
func replace[K comparable, V any](cur *map[K]V, next map[K]V, equal func(a, b V) bool, dirty map[K]struct{}) bool {
	changed := false
	for k, old := range *cur {
		if nv, ok := next[k]; !ok || !equal(old, nv) {
			dirty[k] = struct{}{}
			changed = true
		}
	}
	for k := range next {
		if _, ok := (*cur)[k]; !ok {
			dirty[k] = struct{}{}
			changed = true
		}
	}
	*cur = next
	return changed
}

// upsert sets m[k] to v and marks k dirty, unless m holds an equal value.
func upsert[K comparable, V any](m map[K]V, k K, v V, equal func(a, b V) bool, dirty map[K]struct{}) bool {
	if old, ok := m[k]; ok && equal(old, v) {
		return false
	}
	m[k] = v
	dirty[k] = struct{}{}
	return true
}

// remove deletes k from m and marks it dirty, if m holds it.
func remove[K comparable, V any](m map[K]V, k K, dirty map[K]struct{}) bool {
	if _, ok := m[k]; !ok {
		return false
	}
	delete(m, k)
	dirty[k] = struct{}{}
	return true
}

// Run builds and publishes changes until ctx ends.
func (a *Aggregator) Run(ctx context.Context) error {
	if err := a.waitForSources(ctx); err != nil {
		return nil
	}
	a.build(ctx)
	a.markReady()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.trigger:
		}
		if wait := a.opts.Debounce - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		a.build(ctx)
		last = time.Now()
	}
}

// waitForSources returns once every source delivered its first full state
// or the ready timeout passed; it fails only when ctx ends.
func (a *Aggregator) waitForSources(ctx context.Context) error {
	timeout := time.NewTimer(a.opts.ReadyTimeout)
	defer timeout.Stop()
	for {
		a.mu.Lock()
		missing := slices.Sorted(maps.Keys(a.waiting))
		a.mu.Unlock()
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.trigger:
		case <-timeout.C:
			a.opts.Logger.Warn("serving before every source delivered its first full state",
				"waiting_for", missing, "after", a.opts.ReadyTimeout)
			return nil
		}
	}
}

func (a *Aggregator) markReady() { a.readyOnce.Do(func() { close(a.readyCh) }) }

// contribution is one source's version of a cluster.
type contribution struct {
	source  string
	cluster *sdk.Cluster
}

// build merges what is dirty and publishes the difference.
func (a *Aggregator) build(ctx context.Context) {
	a.mu.Lock()
	if len(a.dirty) == 0 && len(a.dirtyRes) == 0 {
		a.mu.Unlock()
		return
	}
	names := slices.Sorted(maps.Keys(a.dirty))
	refs := slices.SortedFunc(maps.Keys(a.dirtyRes), compareRef)
	clear(a.dirty)
	clear(a.dirtyRes)
	sourceNames := slices.Sorted(maps.Keys(a.sources))
	contribs := make([][]contribution, len(names))
	for i, name := range names {
		for _, sn := range sourceNames {
			if c, ok := a.sources[sn].clusters[name]; ok {
				contribs[i] = append(contribs[i], contribution{sn, c})
			}
		}
	}
	resContribs := make([][]contribution, len(refs))
	resVals := make([][]*sdk.Resource, len(refs))
	for i, ref := range refs {
		for _, sn := range sourceNames {
			if r, ok := a.sources[sn].resources[ref]; ok {
				resContribs[i] = append(resContribs[i], contribution{source: sn})
				resVals[i] = append(resVals[i], r)
			}
		}
	}
	a.mu.Unlock()

	var change Change
	var conflicts []rejection
	for i, name := range names {
		if len(contribs[i]) == 0 {
			if _, ok := a.merged[name]; ok {
				delete(a.merged, name)
				change.RemovedClusters = append(change.RemovedClusters, name)
			}
			continue
		}
		c, conf := merge(name, contribs[i])
		conflicts = append(conflicts, conf...)
		if old, ok := a.merged[name]; ok && mergedEqual(old, c) {
			continue
		}
		a.merged[name] = c
		change.Clusters = append(change.Clusters, c)
	}
	for i, ref := range refs {
		if len(resVals[i]) == 0 {
			if _, ok := a.resources[ref]; ok {
				delete(a.resources, ref)
				change.RemovedResources = append(change.RemovedResources, ref)
			}
			continue
		}
		srcs := make([]string, len(resContribs[i]))
		for j, c := range resContribs[i] {
			srcs[j] = c.source
		}
		win := resVals[i][0]
		for j := 1; j < len(resVals[i]); j++ {
			if string(resVals[i][j].Value) != string(win.Value) {
				conflicts = append(conflicts, rejection{ReasonConflict, "resource " + ref.TypeURL + " " + quote(ref.Name) + ": sources " + quote(srcs[0]) + " and " + quote(srcs[j]) + " disagree; serving " + quote(srcs[0]) + "'s"})
			}
		}
		r := &Resource{Resource: *win, Sources: srcs}
		if old, ok := a.resources[ref]; ok && string(old.Value) == string(r.Value) && slices.Equal(old.Sources, r.Sources) {
			continue
		}
		a.resources[ref] = r
		change.Resources = append(change.Resources, r)
	}
	if len(conflicts) > 0 {
		a.mu.Lock()
		for _, c := range conflicts {
			a.rejected[c.reason]++
		}
		a.mu.Unlock()
		for _, c := range conflicts {
			a.opts.Logger.Warn("conflicting sources", "detail", c.msg)
		}
	}
	if !change.Empty() && a.opts.Publish != nil {
		a.opts.Publish(ctx, &change)
	}
}

func compareRef(x, y sdk.ResourceRef) int {
	return cmp.Or(cmp.Compare(x.TypeURL, y.TypeURL), cmp.Compare(x.Name, y.Name))
}
