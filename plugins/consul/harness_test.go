package consul

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/goleak"

	"github.com/xdsbridge/xdsbridge/sdk"
	consultest "github.com/xdsbridge/xdsbridge/test/consul"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait for a source to reach a state.
const waitTimeout = 20 * time.Second

// watch runs a Source and folds its updates into the state a consumer
// would hold.
type watch struct {
	t      testing.TB
	notify chan struct{} // capacity 1: something changed
	// stop ends the source and waits for it; the test's cleanup calls it
	// too.
	stop func()

	mu       sync.Mutex
	clusters map[string]sdk.Cluster
	updates  []sdk.Update
	status   sdk.Status
	fulls    int
}

// startSource runs a Source for cfg until the test ends.
func startSource(t testing.TB, cfg Config, opts Options) *watch {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	src, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	w := &watch{t: t, notify: make(chan struct{}, 1), clusters: map[string]sdk.Cluster{}}
	up := make(chan sdk.Update)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	foldDone := make(chan struct{})
	go func() { runDone <- src.Run(ctx, up) }()
	go func() {
		defer close(foldDone)
		for {
			select {
			case u := <-up:
				w.apply(u)
			case <-ctx.Done():
				return
			}
		}
	}()
	stop := func() {
		cancel()
		select {
		case err := <-runDone:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return within 10s of cancel")
		}
		<-foldDone
	}
	var once sync.Once
	w.stop = func() { once.Do(stop) }
	t.Cleanup(w.stop)
	return w
}

func (w *watch) apply(u sdk.Update) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if u.Full {
		w.fulls++
		w.clusters = map[string]sdk.Cluster{}
	}
	if w.fulls == 0 && (len(u.Clusters) > 0 || len(u.RemovedClusters) > 0) {
		w.t.Errorf("change set before the first full state: %+v", u)
	}
	for _, c := range u.Clusters {
		w.clusters[c.Name] = c
	}
	for _, n := range u.RemovedClusters {
		delete(w.clusters, n)
	}
	if u.Status != nil {
		w.status = *u.Status
	}
	w.updates = append(w.updates, u)
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// view is what a wait predicate sees.
type view struct {
	clusters map[string]sdk.Cluster
	updates  []sdk.Update
	status   sdk.Status
	fulls    int
}

// waitFor waits until pred holds, failing the test after waitTimeout.
func (w *watch) waitFor(desc string, pred func(v view) bool) view {
	w.t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		v := view{clusters: w.clusters, updates: w.updates, status: w.status, fulls: w.fulls}
		ok := pred(v)
		w.mu.Unlock()
		if ok {
			return v
		}
		select {
		case <-w.notify:
		case <-deadline.C:
			w.mu.Lock()
			defer w.mu.Unlock()
			w.t.Fatalf("timed out waiting for %s; status %v %q, %d updates, clusters:\n%s",
				desc, w.status.State, w.status.Reason, len(w.updates), dump(w.clusters))
		}
	}
}

// mark returns the number of updates so far, for since.
func (w *watch) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.updates)
}

// since returns the updates after mark.
func (w *watch) since(mark int) []sdk.Update {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]sdk.Update(nil), w.updates[mark:]...)
}

func (w *watch) cluster(name string) (sdk.Cluster, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.clusters[name]
	return c, ok
}

func dump(cs map[string]sdk.Cluster) string {
	var b strings.Builder
	for _, n := range sortedKeys(cs) {
		fmt.Fprintf(&b, "  %s:", n)
		for _, ep := range cs[n].Endpoints {
			fmt.Fprintf(&b, " %s:%d/%v/w%d/p%d", ep.Address, ep.Port, ep.Health, ep.Weight, ep.Priority)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Predicates.

func hasFull(v view) bool { return v.fulls > 0 }

// endpointsAre holds when cluster name exists with exactly the given
// address:port/health endpoints, in order.
func endpointsAre(name string, want ...string) func(v view) bool {
	return func(v view) bool {
		c, ok := v.clusters[name]
		if !ok || len(c.Endpoints) != len(want) {
			return false
		}
		for i, ep := range c.Endpoints {
			if fmt.Sprintf("%s:%d/%v", ep.Address, ep.Port, ep.Health) != want[i] {
				return false
			}
		}
		return true
	}
}

func absent(name string) func(v view) bool {
	return func(v view) bool { _, ok := v.clusters[name]; return v.fulls > 0 && !ok }
}

func statusIs(state sdk.State, reason string) func(v view) bool {
	return func(v view) bool { return v.status.State == state && strings.Contains(v.status.Reason, reason) }
}

// Consul helpers.

// testConfig is the default configuration pointed at a, with fast retries,
// reading only the given services.
func testConfig(a *consultest.Agent, services ...string) Config {
	cfg := DefaultConfig()
	cfg.Address = a.Addr
	cfg.Services = services
	cfg.Retry = RetryConfig{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond}
	return cfg
}

// registerExternal registers a service instance on an external node through
// the catalog API, with one service check of the given status when status
// is set.
func registerExternal(t testing.TB, c *api.Client, node, addr string, nodeMeta map[string]string, svc *api.AgentService, status string) {
	t.Helper()
	reg := &api.CatalogRegistration{Node: node, Address: addr, NodeMeta: nodeMeta, Service: svc, SkipNodeUpdate: false}
	if status != "" {
		reg.Checks = api.HealthChecks{{
			Node: node, CheckID: "check-" + svc.ID, Name: "check", Status: status, ServiceID: svc.ID,
		}}
	}
	if _, err := c.Catalog().Register(reg, nil); err != nil {
		t.Fatalf("catalog register %s/%s: %v", node, svc.ID, err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// testLogger logs to the test log at debug level.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(&testWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// connCounter wraps a dialer and counts open connections and their peak.
type connCounter struct {
	open, peak, total atomic.Int64
}

func (cc *connCounter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cc.total.Add(1)
	n := cc.open.Add(1)
	for {
		p := cc.peak.Load()
		if n <= p || cc.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return &countedConn{Conn: c, cc: cc}, nil
}

type countedConn struct {
	net.Conn
	cc   *connCounter
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.cc.open.Add(-1) })
	return c.Conn.Close()
}

var _ io.Writer = (*syncBuffer)(nil)

// slogTo logs to w at debug level.
func slogTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
