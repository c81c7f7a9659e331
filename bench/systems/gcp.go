package systems

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/xdsbridge/xdsbridge/bench/fleet"
	"github.com/xdsbridge/xdsbridge/bench/workload"
	"github.com/xdsbridge/xdsbridge/xds/translate"
)

// translated returns the Envoy resources of cluster r: the translator's
// output for the cluster the aggregator would build.
func translated(m *workload.Model, r workload.Ref) (cds, eds types.Resource, name string, err error) {
	ac := m.Aggregated(r)
	cl, err := translate.Cluster(ac)
	if err != nil {
		return nil, nil, "", err
	}
	return cl, translate.LoadAssignment(ac), ac.Name, nil
}

// oneNode puts every client on the same snapshot.
type oneNode struct{}

func (oneNode) ID(*corev3.Node) string { return "all" }

// Snapshot is go-control-plane's SnapshotCache as most control planes use
// it: one snapshot shared by every client (one node hash), rebuilt after
// changes. Apply translates the changed clusters and hands them to an
// updater goroutine, which rebuilds and sets the snapshot; changes that
// arrive while it is setting one are coalesced into the next, as a
// control plane built on it would do. Each type's version moves only when
// the type changes.
type Snapshot struct {
	Logger *slog.Logger

	cache cachev3.SnapshotCache
	srv   *gcp

	mu      sync.Mutex
	pending map[string]snapshotChange
	wake    chan struct{}
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// Owned by the updater.
	cds, eds cachev3.Resources
	version  int
}

// snapshotChange is a cluster's new resources; nil ones remove it.
type snapshotChange struct{ cds, eds types.Resource }

func (s *Snapshot) Name() string { return "snapshot" }

func (s *Snapshot) Start(_ context.Context, m *workload.Model, _ workload.Op) (fleet.Target, error) {
	logger := orDiscard(s.Logger)
	// ads=false: in ADS mode the cache withholds a response whose request
	// names a resource the snapshot lacks, which stalls EDS for a client
	// until it has unsubscribed from a removed cluster.
	s.cache = cachev3.NewSnapshotCache(false, oneNode{}, gcpLogger{logger})
	s.cds = cachev3.Resources{Items: map[string]types.ResourceWithTTL{}}
	s.eds = cachev3.Resources{Items: map[string]types.ResourceWithTTL{}}
	s.pending = map[string]snapshotChange{}
	s.wake = make(chan struct{}, 1)
	if err := s.Apply(context.Background(), workload.Op{}, m, m.Refs(), nil); err != nil {
		return fleet.Target{}, err
	}
	s.update()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			}
			s.update()
		}
	})
	srv, target, err := serveGCP(s.cache, true, logger)
	if err != nil {
		_ = s.Stop()
		return fleet.Target{}, fmt.Errorf("snapshot: %w", err)
	}
	s.srv = srv
	return target, nil
}

func (s *Snapshot) Apply(_ context.Context, _ workload.Op, m *workload.Model, changed, removed []workload.Ref) error {
	next := make(map[string]snapshotChange, len(changed)+len(removed))
	for _, r := range changed {
		cl, cla, name, err := translated(m, r)
		if err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		next[name] = snapshotChange{cds: cl, eds: cla}
	}
	for _, r := range removed {
		next[r.Name()] = snapshotChange{}
	}
	s.mu.Lock()
	maps.Copy(s.pending, next)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// update rebuilds the snapshot with the pending changes and sets it.
func (s *Snapshot) update() {
	s.mu.Lock()
	pending := s.pending
	s.pending = map[string]snapshotChange{}
	s.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	s.version++
	v := strconv.Itoa(s.version)
	// The cache reads the snapshot's maps after SetSnapshot: build new ones.
	eds := maps.Clone(s.eds.Items)
	var cds map[string]types.ResourceWithTTL
	for name, c := range pending {
		_, had := s.cds.Items[name]
		if c.eds == nil {
			delete(eds, name)
		} else {
			eds[name] = types.ResourceWithTTL{Resource: c.eds}
		}
		if had == (c.cds != nil) {
			continue
		}
		if cds == nil {
			cds = maps.Clone(s.cds.Items)
		}
		if c.cds == nil {
			delete(cds, name)
		} else {
			cds[name] = types.ResourceWithTTL{Resource: c.cds}
		}
	}
	s.eds = cachev3.Resources{Version: v, Items: eds}
	if cds != nil {
		s.cds = cachev3.Resources{Version: v, Items: cds}
	}
	snap := &cachev3.Snapshot{}
	snap.Resources[types.Cluster] = s.cds
	snap.Resources[types.Endpoint] = s.eds
	if err := s.cache.SetSnapshot(context.Background(), "all", snap); err != nil {
		orDiscard(s.Logger).Error("set snapshot", "err", err)
	}
}

func (s *Snapshot) Stop() error {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	if s.srv != nil {
		s.srv.stop()
	}
	return nil
}

func (s *Snapshot) ChildCPU() time.Duration { return 0 }

// Linear is go-control-plane's LinearCache, one per type, behind a
// MuxCache. It cannot serve REST: LinearCache does not implement Fetch.
type Linear struct {
	Logger *slog.Logger

	cds, eds *cachev3.LinearCache
	srv      *gcp
	// clusters are the names in cds.
	clusters map[string]struct{}
}

func (l *Linear) Name() string { return "linear" }

func (l *Linear) Start(_ context.Context, m *workload.Model, _ workload.Op) (fleet.Target, error) {
	logger := orDiscard(l.Logger)
	l.cds = cachev3.NewLinearCache(resource.ClusterType, cachev3.WithLogger(gcpLogger{logger}))
	l.eds = cachev3.NewLinearCache(resource.EndpointType, cachev3.WithLogger(gcpLogger{logger}))
	l.clusters = map[string]struct{}{}
	if err := l.apply(m, m.Refs(), nil); err != nil {
		return fleet.Target{}, err
	}
	mux := &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return r.GetTypeUrl() },
		Caches: map[string]cachev3.Cache{
			resource.ClusterType:  l.cds,
			resource.EndpointType: l.eds,
		},
	}
	srv, target, err := serveGCP(mux, false, logger)
	if err != nil {
		return fleet.Target{}, fmt.Errorf("linear: %w", err)
	}
	l.srv = srv
	return target, nil
}

func (l *Linear) Apply(_ context.Context, _ workload.Op, m *workload.Model, changed, removed []workload.Ref) error {
	return l.apply(m, changed, removed)
}

func (l *Linear) apply(m *workload.Model, changed, removed []workload.Ref) error {
	eds := make(map[string]types.Resource, len(changed))
	cds := map[string]types.Resource{}
	for _, r := range changed {
		cl, cla, name, err := translated(m, r)
		if err != nil {
			return fmt.Errorf("linear: %w", err)
		}
		eds[name] = cla
		if _, ok := l.clusters[name]; !ok {
			cds[name] = cl
			l.clusters[name] = struct{}{}
		}
	}
	var gone []string
	for _, r := range removed {
		gone = append(gone, r.Name())
		delete(l.clusters, r.Name())
	}
	// Clusters first: a client must see a new cluster before its endpoints.
	if len(cds) > 0 {
		if err := l.cds.UpdateResources(cds, nil); err != nil {
			return fmt.Errorf("linear: %w", err)
		}
	}
	if len(eds) > 0 || len(gone) > 0 {
		if err := l.eds.UpdateResources(eds, gone); err != nil {
			return fmt.Errorf("linear: %w", err)
		}
	}
	if len(gone) > 0 {
		if err := l.cds.UpdateResources(nil, gone); err != nil {
			return fmt.Errorf("linear: %w", err)
		}
	}
	return nil
}

func (l *Linear) Stop() error {
	if l.srv != nil {
		l.srv.stop()
	}
	return nil
}

func (l *Linear) ChildCPU() time.Duration { return 0 }

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
