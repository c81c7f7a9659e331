package e2e

// Shared by the reliability suite (reliability_*_test.go): the profile
// switch, figures, known-bug checks, the fault plugin, and a reconnecting
// xDS client that keeps what it was sent and counts what it lost.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// The suite has two profiles. The short one (the default, and with -short)
// is what `make test` and CI run; XDSBRIDGE_PROFILE=full runs every case at
// the size the issue asks for (50 kills, 1,000 storm clients, …).
const profileEnv = "XDSBRIDGE_PROFILE"

func fullProfile() bool { return os.Getenv(profileEnv) == "full" && !testing.Short() }

// pick returns short or full by profile.
func pick[T any](short, full T) T {
	if fullProfile() {
		return full
	}
	return short
}

func profileName() string { return pick("short", "full") }

// figure logs one of the numbers the suite reports; `go test -v | grep
// FIGURE` collects them.
func figure(t testing.TB, name string, format string, args ...any) {
	t.Helper()
	t.Logf("FIGURE [%s profile] %s: %s", profileName(), name, fmt.Sprintf(format, args...))
}

// buildFaultPlugin builds test/e2e/faultplugin into a temporary directory
// and returns the binary's path. $XDSBRIDGE_FAULTPLUGIN names a binary
// built already.
func buildFaultPlugin(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("XDSBRIDGE_FAULTPLUGIN"); p != "" {
		return p
	}
	bin := filepath.Join(t.TempDir(), "faultplugin")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/xdsbridge/xdsbridge/test/e2e/faultplugin")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build faultplugin: %v\n%s", err, out)
	}
	return bin
}

// faultPlugin is one instance of the fault plugin in a bridge's directory:
// its script and start log live there.
type faultPlugin struct {
	t        testing.TB
	name     string
	script   string
	startlog string
	mu       sync.Mutex
	steps    []string
}

// newFaultPlugin returns the plugins.yaml entry of a fault plugin instance
// named name, in dir, with the given mode and first script steps.
func newFaultPlugin(t testing.TB, bin, dir, name, mode string, steps ...any) (*faultPlugin, string) {
	t.Helper()
	fp := &faultPlugin{t: t, name: name, script: filepath.Join(dir, name+".script"), startlog: filepath.Join(dir, name+".starts")}
	fp.add(steps...)
	entry := fmt.Sprintf("  - name: %s\n    command: [%q, -mode, %s, -script, %q, -startlog, %q, -reason, %q]\n    restart: {initial_backoff: 50ms, max_backoff: 400ms}\n",
		name, bin, mode, fp.script, fp.startlog, "faultplugin "+name+": refusing to start on purpose")
	return fp, entry
}

// add appends steps to the script, atomically.
func (fp *faultPlugin) add(steps ...any) {
	fp.t.Helper()
	fp.mu.Lock()
	defer fp.mu.Unlock()
	for _, s := range steps {
		b, err := json.Marshal(s)
		if err != nil {
			fp.t.Fatal(err)
		}
		fp.steps = append(fp.steps, string(b))
	}
	tmp := fp.script + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(fp.steps, "\n")+"\n"), 0o644); err != nil {
		fp.t.Fatal(err)
	}
	if err := os.Rename(tmp, fp.script); err != nil {
		fp.t.Fatal(err)
	}
}

// starts returns the start times of the plugin's processes.
func (fp *faultPlugin) starts() []time.Time {
	data, _ := os.ReadFile(fp.startlog)
	var out []time.Time
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var gen, pid int
		var ns int64
		if _, err := fmt.Sscan(line, &gen, &pid, &ns); err == nil {
			out = append(out, time.Unix(0, ns))
		}
	}
	return out
}

// step builders for the fault plugin's script.
type faultStep = map[string]any

// sourceUpdate renders a sourcev1.Update in proto JSON from a plain
// description, for the fault plugin's "update" and "part" steps.
func sourceUpdate(full bool, clusters ...map[string]any) map[string]any {
	u := map[string]any{"full": full, "status": map[string]any{"state": "CONNECTED"}}
	if len(clusters) > 0 {
		u["clusters"] = clusters
	}
	return u
}

// ep is an endpoint in proto JSON.
func relEP(addr string, port int) map[string]any {
	return map[string]any{"address": addr, "port": port, "locality": map[string]any{"region": "r1", "zone": "z1"}}
}

func relCluster(name string, eps ...map[string]any) map[string]any {
	return map[string]any{"name": name, "endpoints": eps}
}

// restart stops the bridge (SIGTERM, clean exit) and starts it again in the
// same directory on the same ports.
func (b *bridge) restart() {
	b.t.Helper()
	b.stop()
	b.done = make(chan struct{})
	b.start()
}

// kill sends the bridge SIGKILL and waits for it to die.
func (b *bridge) kill() {
	b.t.Helper()
	_ = b.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		b.t.Fatal("xdsbridge did not die of SIGKILL")
	}
}

// debugResources is /debug/resources.
type debugResources struct {
	Versions  map[string]string `json:"versions"`
	Resources []struct {
		Type     string          `json:"type"`
		Name     string          `json:"name"`
		Version  string          `json:"version"`
		Sources  []string        `json:"sources"`
		Resource json.RawMessage `json:"resource"`
	} `json:"resources"`
}

func (b *bridge) resources() debugResources {
	b.t.Helper()
	var r debugResources
	b.getJSON("/debug/resources", &r)
	return r
}

// debugSources is the whole of /debug/sources.
type debugSources struct {
	Sources []struct {
		sourceStatus
		Since      time.Time `json:"since"`
		LastUpdate time.Time `json:"last_update"`
		Full       bool      `json:"full_state_received"`
		Clusters   int       `json:"clusters"`
	} `json:"sources"`
	Rejected map[string]uint64 `json:"rejected"`
}

func (b *bridge) debugSources() debugSources {
	b.t.Helper()
	var d debugSources
	b.getJSON("/debug/sources", &d)
	return d
}

// tryGet fetches an admin path and reports its status, or 0 when the
// request failed; it never fails the test.
func (b *bridge) tryGet(path string, within time.Duration) (int, time.Duration) {
	_, code, took := b.getBody(path, within)
	return code, took
}

// getBody is tryGet that also returns the body.
func (b *bridge) getBody(path string, within time.Duration) ([]byte, int, time.Duration) {
	c := http.Client{Timeout: within}
	start := time.Now()
	resp, err := c.Get("http://" + b.adminAddr + path)
	if err != nil {
		return nil, 0, time.Since(start)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, 0, time.Since(start)
	}
	return body, resp.StatusCode, time.Since(start)
}

// logLines returns the bridge's log lines that contain every one of subs,
// with the text handler's \" escapes undone.
func (b *bridge) logLines(subs ...string) []string {
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(b.log.String(), `\"`, `"`), "\n") {
		ok := true
		for _, s := range subs {
			if !strings.Contains(l, s) {
				ok = false
				break
			}
		}
		if ok && l != "" {
			out = append(out, l)
		}
	}
	return out
}

// pidAlive reports whether pid runs a process whose command line contains
// want (so a recycled pid is never signalled).
func pidAlive(pid int, want string) bool {
	if pid <= 0 {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return strings.Contains(strings.ReplaceAll(string(cmdline), "\x00", " "), want)
}

// ---------------------------------------------------------------------
// watcher: a reconnecting xDS client that subscribes to every cluster
// (CDS wildcard, then EDS for each cluster it learns), ACKs everything,
// and keeps a record of what it saw.

type watcher struct {
	t     testing.TB
	addr  string
	node  string
	delta bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// What the client holds: per cluster, its CDS bytes hash and its
	// endpoints, and per type the SotW version.
	cds       map[string]string
	eds       map[string][]string
	edsHash   map[string]string
	versions  map[string]string            // SotW type versions
	dversions map[string]map[string]string // delta: type → name → version
	// What it saw.
	responses  int
	reconnects int
	lost       int // endpoints that disappeared from a cluster
	removals   int // clusters removed (CDS or EDS)
	changes    int // resources whose bytes changed after the first time
	events     []string
	// monotonic: every endpoint, once seen, must stay (add-only load).
	monotonic bool
	lastErr   error
	synced    chan struct{} // closed at the first sync
	// sessions counts streams opened; resynced is the last session in
	// which the watcher got a response and then held every cluster's
	// endpoints.
	sessions, resynced int
	endSession         context.CancelFunc
}

// dialOptions: reconnect fast (the bridge restarts in these tests) and
// take big responses.
var watcherDialOptions = []grpc.DialOption{
	grpc.WithTransportCredentials(insecure.NewCredentials()),
	grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256 << 20)),
	grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second}, MinConnectTimeout: 2 * time.Second}),
}

// session dials the watcher's address and runs one stream until it fails.
func (w *watcher) session() error {
	ctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	w.mu.Lock()
	addr := w.addr
	w.sessions++
	w.endSession = cancel
	w.mu.Unlock()
	cc, err := grpc.NewClient(addr, watcherDialOptions...)
	if err != nil {
		return err
	}
	defer cc.Close()
	if w.delta {
		return w.deltaSession(ctx, cc)
	}
	return w.sotwSession(ctx, cc)
}

// moveTo makes the watcher reconnect to addr, keeping what it holds, as a
// client behind a balancer moved to another replica does.
func (w *watcher) moveTo(addr string) {
	w.mu.Lock()
	w.addr = addr
	end := w.endSession
	w.mu.Unlock()
	if end != nil {
		end()
	}
}

// resyncedAfter reports whether the watcher has opened a stream after
// session n and is in sync on it.
func (w *watcher) resyncedAfter(n int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.resynced > n
}

func (w *watcher) currentSession() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sessions
}

func newWatcher(t testing.TB, addr, node string, delta, monotonic bool) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{t: t, addr: addr, node: node, delta: delta, monotonic: monotonic, ctx: ctx, cancel: cancel,
		cds: map[string]string{}, eds: map[string][]string{}, edsHash: map[string]string{}, versions: map[string]string{},
		dversions: map[string]map[string]string{resource.ClusterType: {}, resource.EndpointType: {}}, synced: make(chan struct{})}
	w.wg.Go(func() {
		for w.ctx.Err() == nil {
			err := w.session()
			if w.ctx.Err() != nil {
				return
			}
			w.mu.Lock()
			w.reconnects++
			w.lastErr = err
			w.mu.Unlock()
			select {
			case <-w.ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	t.Cleanup(w.close)
	return w
}

func (w *watcher) close() {
	w.cancel()
	w.wg.Wait()
}

func (w *watcher) event(format string, args ...any) {
	if len(w.events) < 200 {
		w.events = append(w.events, fmt.Sprintf(format, args...))
	}
}

// snapshot returns what the watcher holds: cluster → sorted endpoints.
func (w *watcher) snapshot() map[string][]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string][]string, len(w.cds))
	for name := range w.cds {
		out[name] = slices.Clone(w.eds[name])
	}
	return out
}

type watcherStats struct {
	responses, reconnects, lost, removals, changes int
	events                                         []string
}

func (w *watcher) stats() watcherStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return watcherStats{w.responses, w.reconnects, w.lost, w.removals, w.changes, slices.Clone(w.events)}
}

// holds reports whether the watcher holds exactly want (cluster → sorted
// "ip:port" endpoints).
func (w *watcher) holds(want map[string][]string) bool {
	got := w.snapshot()
	if len(got) != len(want) {
		return false
	}
	for name, eps := range want {
		g, ok := got[name]
		if !ok || !slices.Equal(g, eps) {
			return false
		}
	}
	return true
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

func endpointsOf(c *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, l := range c.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))))
		}
	}
	slices.Sort(out)
	return out
}

// setEDS records a cluster's new endpoints (under w.mu).
func (w *watcher) setEDS(name string, raw []byte, eps []string) {
	old, had := w.eds[name]
	if had && w.monotonic {
		for _, e := range old {
			if _, found := slices.BinarySearch(eps, e); !found {
				w.lost++
				w.event("%s lost endpoint %s", name, e)
			}
		}
	}
	h := hashOf(raw)
	if prev, ok := w.edsHash[name]; ok && prev != h {
		w.changes++
	}
	w.edsHash[name] = h
	w.eds[name] = eps
}

func (w *watcher) setCDS(name string, raw []byte) {
	h := hashOf(raw)
	if prev, ok := w.cds[name]; ok && prev != h {
		w.changes++
	}
	w.cds[name] = h
}

func (w *watcher) removeCluster(name, why string) {
	if _, ok := w.cds[name]; ok {
		w.removals++
		w.event("%s removed (%s)", name, why)
	}
	delete(w.cds, name)
	if eps, ok := w.eds[name]; ok && w.monotonic {
		w.lost += len(eps)
	}
	delete(w.eds, name)
	delete(w.edsHash, name)
}

func (w *watcher) markSynced() {
	w.resynced = w.sessions
	select {
	case <-w.synced:
	default:
		close(w.synced)
	}
}

func (w *watcher) nodeProto() *core.Node { return &core.Node{Id: w.node, Cluster: "reliability"} }

// sotwSession runs one ADS stream until it fails.
func (w *watcher) sotwSession(ctx context.Context, cc *grpc.ClientConn) error {
	st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	w.mu.Lock()
	cdsReq := &discovery.DiscoveryRequest{Node: w.nodeProto(), TypeUrl: resource.ClusterType, VersionInfo: w.versions[resource.ClusterType]}
	names := relKeys(w.cds)
	edsVersion := w.versions[resource.EndpointType]
	w.mu.Unlock()
	if err := st.Send(cdsReq); err != nil {
		return err
	}
	subscribed := names
	if len(names) > 0 {
		if err := st.Send(&discovery.DiscoveryRequest{Node: w.nodeProto(), TypeUrl: resource.EndpointType, ResourceNames: names, VersionInfo: edsVersion}); err != nil {
			return err
		}
	}
	var edsNonce string
	for {
		r, err := st.Recv()
		if err != nil {
			return err
		}
		w.mu.Lock()
		w.responses++
		var ack []*discovery.DiscoveryRequest
		switch r.GetTypeUrl() {
		case resource.ClusterType:
			seen := map[string]bool{}
			for _, a := range r.GetResources() {
				var c clusterv3.Cluster
				if err := a.UnmarshalTo(&c); err != nil {
					w.mu.Unlock()
					return err
				}
				seen[c.GetName()] = true
				w.setCDS(c.GetName(), a.GetValue())
			}
			for name := range w.cds {
				if !seen[name] {
					w.removeCluster(name, "absent from SotW CDS")
				}
			}
			w.versions[resource.ClusterType] = r.GetVersionInfo()
			ack = append(ack, &discovery.DiscoveryRequest{Node: w.nodeProto(), TypeUrl: resource.ClusterType, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
			now := relKeys(w.cds)
			if !slices.Equal(now, subscribed) {
				subscribed = now
				ack = append(ack, &discovery.DiscoveryRequest{Node: w.nodeProto(), TypeUrl: resource.EndpointType, ResourceNames: now,
					VersionInfo: w.versions[resource.EndpointType], ResponseNonce: edsNonce})
			}
		case resource.EndpointType:
			for _, a := range r.GetResources() {
				var c endpointv3.ClusterLoadAssignment
				if err := a.UnmarshalTo(&c); err != nil {
					w.mu.Unlock()
					return err
				}
				w.setEDS(c.GetClusterName(), a.GetValue(), endpointsOf(&c))
			}
			w.versions[resource.EndpointType] = r.GetVersionInfo()
			edsNonce = r.GetNonce()
			ack = append(ack, &discovery.DiscoveryRequest{Node: w.nodeProto(), TypeUrl: resource.EndpointType, ResourceNames: subscribed,
				VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
		}
		if w.syncedLocked() {
			w.markSynced()
		}
		w.mu.Unlock()
		for _, a := range ack {
			if err := st.Send(a); err != nil {
				return err
			}
		}
	}
}

// syncedLocked: every cluster has its endpoints.
func (w *watcher) syncedLocked() bool {
	if _, ok := w.versions[resource.ClusterType]; !ok && !w.delta {
		return false
	}
	for name := range w.cds {
		if _, ok := w.eds[name]; !ok {
			return false
		}
	}
	return true
}

// deltaSession runs one delta ADS stream until it fails.
func (w *watcher) deltaSession(ctx context.Context, cc *grpc.ClientConn) error {
	st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	w.mu.Lock()
	cdsReq := &discovery.DeltaDiscoveryRequest{Node: w.nodeProto(), TypeUrl: resource.ClusterType, InitialResourceVersions: relClone(w.dversions[resource.ClusterType])}
	names := relKeys(w.cds)
	edsReq := &discovery.DeltaDiscoveryRequest{Node: w.nodeProto(), TypeUrl: resource.EndpointType, ResourceNamesSubscribe: names, InitialResourceVersions: relClone(w.dversions[resource.EndpointType])}
	w.mu.Unlock()
	if err := st.Send(cdsReq); err != nil {
		return err
	}
	if len(names) > 0 {
		if err := st.Send(edsReq); err != nil {
			return err
		}
	}
	subscribed := map[string]bool{}
	for _, n := range names {
		subscribed[n] = true
	}
	for {
		r, err := st.Recv()
		if err != nil {
			return err
		}
		w.mu.Lock()
		w.responses++
		var sub []string
		switch r.GetTypeUrl() {
		case resource.ClusterType:
			for _, res := range r.GetResources() {
				w.setCDS(res.GetName(), res.GetResource().GetValue())
				w.dversions[resource.ClusterType][res.GetName()] = res.GetVersion()
				if !subscribed[res.GetName()] {
					subscribed[res.GetName()] = true
					sub = append(sub, res.GetName())
				}
			}
			for _, name := range r.GetRemovedResources() {
				w.removeCluster(name, "delta CDS removal")
				delete(w.dversions[resource.ClusterType], name)
				delete(w.dversions[resource.EndpointType], name)
			}
		case resource.EndpointType:
			for _, res := range r.GetResources() {
				var c endpointv3.ClusterLoadAssignment
				if err := res.GetResource().UnmarshalTo(&c); err != nil {
					w.mu.Unlock()
					return err
				}
				w.setEDS(res.GetName(), res.GetResource().GetValue(), endpointsOf(&c))
				w.dversions[resource.EndpointType][res.GetName()] = res.GetVersion()
			}
			for _, name := range r.GetRemovedResources() {
				if eps, ok := w.eds[name]; ok {
					w.removals++
					w.event("%s EDS removed", name)
					if w.monotonic {
						w.lost += len(eps)
					}
				}
				delete(w.eds, name)
				delete(w.dversions[resource.EndpointType], name)
			}
		}
		if w.syncedLocked() {
			w.markSynced()
		}
		w.mu.Unlock()
		if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: w.nodeProto(), TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}); err != nil {
			return err
		}
		if len(sub) > 0 {
			slices.Sort(sub)
			if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: w.nodeProto(), TypeUrl: resource.EndpointType, ResourceNamesSubscribe: sub}); err != nil {
				return err
			}
		}
	}
}

func relKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func relClone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// wantEndpoints renders cluster → ports on 127.0.0.1 as the watcher holds
// them.
func wantEndpoints(clusters map[string][]int) map[string][]string {
	out := map[string][]string{}
	for name, ports := range clusters {
		eps := []string{}
		for _, p := range ports {
			eps = append(eps, fmt.Sprintf("127.0.0.1:%d", p))
		}
		slices.Sort(eps)
		out[name] = eps
	}
	return out
}
