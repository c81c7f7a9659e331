package e2e

// Plugin faults: plugins killed under load, hung, failing at start-up, and
// sending garbage. Each case runs the real binary with plugins out of
// process and asserts what xDS clients saw.

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Hang detection, as internal/host documents it: a ping every 5s, 5s to
// answer, then the kill gives the plugin 3s before SIGKILL.
const (
	hostPingInterval = 5 * time.Second
	hostPingTimeout  = 5 * time.Second
	hostKillGrace    = 3 * time.Second
)

// TestReliabilityPluginKillStorm SIGKILLs the static plugin at random
// moments while its file grows by one endpoint every few milliseconds.
// Every change is an addition, so a client that ever sees an endpoint or a
// cluster go away has seen a loss: SotW and delta watchers must see none,
// and once the load stops they must hold exactly the final file.
func TestReliabilityPluginKillStorm(t *testing.T) {
	kills := pick(50, 200)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("kills %d, seed %d", kills, seed)

	state := map[string][]int{}
	for c := range 8 {
		state[fmt.Sprintf("svc-%d", c)] = []int{10000 + c*10, 10001 + c*10}
	}
	b := startBridge(t, map[string]string{
		"plugins.yaml":  "plugins:\n  - name: files\n    type: static\n    restart: {initial_backoff: 10ms, max_backoff: 200ms}\n    config:\n      path: clusters.yaml\n",
		"clusters.yaml": clustersFile(state),
	})
	watchers := []*watcher{
		newWatcher(t, b.grpcAddr, "kill-sotw", false, true),
		newWatcher(t, b.grpcAddr, "kill-delta", true, true),
	}
	for _, w := range watchers {
		eventually(t, 15*time.Second, w.node+" to hold the first file", func() bool { return w.holds(wantEndpoints(state)) })
	}
	before := b.sources()["files"].Restarts

	// Load: one more endpoint every 10ms, round robin over the clusters.
	var (
		mu     sync.Mutex
		writes int
		stop   = make(chan struct{})
		wg     sync.WaitGroup
	)
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			mu.Lock()
			name := fmt.Sprintf("svc-%d", i%8)
			state[name] = append(state[name], 20000+i)
			content := clustersFile(state)
			writes++
			mu.Unlock()
			b.write("clusters.yaml", content)
		}
	})
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()

	killed, lastPid := 0, 0
	deadline := time.Now().Add(pick(90*time.Second, 180*time.Second))
	for killed < kills && time.Now().Before(deadline) {
		time.Sleep(time.Duration(20+rng.IntN(280)) * time.Millisecond)
		st := b.sources()["files"]
		if st.Pid == lastPid || !pidAlive(st.Pid, "plugin static") {
			continue // between processes: try again at the next moment
		}
		if err := syscall.Kill(st.Pid, syscall.SIGKILL); err == nil {
			killed, lastPid = killed+1, st.Pid
		}
	}
	stopLoad()
	if killed < kills {
		t.Fatalf("only %d of %d kills landed before the deadline", killed, kills)
	}
	var st sourceStatus
	deadline = time.Now().Add(20 * time.Second)
	for {
		st = b.sources()["files"]
		if st.Restarts-before >= killed && st.State == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d kills, %d restarts; plugin %+v", killed, st.Restarts-before, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	final := wantEndpoints(state)
	for _, w := range watchers {
		eventually(t, 20*time.Second, w.node+" to hold the final file", func() bool { return w.holds(final) })
	}
	total := 0
	for _, eps := range final {
		total += len(eps)
	}
	for _, w := range watchers {
		s := w.stats()
		if s.lost != 0 || s.removals != 0 {
			t.Errorf("%s: %d endpoints lost, %d clusters removed; first events: %v", w.node, s.lost, s.removals, s.events)
		}
		figure(t, "plugin kill storm "+w.node, "kills survived %d, endpoints lost %d, spurious removals %d, responses %d, endpoints at the end %d (from %d file writes)",
			killed, s.lost, s.removals, s.responses, total, writes)
	}
}

// TestReliabilityPluginHang SIGSTOPs the static plugin: it stops sending and
// stops answering health checks. The host must kill and restart it within
// the documented bound, clients must keep its endpoints meanwhile, and the
// restarted plugin must serve new edits.
func TestReliabilityPluginHang(t *testing.T) {
	state := map[string][]int{"a": {1001, 1002}, "b": {2001}}
	b := startBridge(t, map[string]string{
		"plugins.yaml":  "plugins:\n  - name: files\n    type: static\n    restart: {initial_backoff: 100ms, max_backoff: 1s}\n    config:\n      path: clusters.yaml\n",
		"clusters.yaml": clustersFile(state),
	})
	w := newWatcher(t, b.grpcAddr, "hang-watch", true, true)
	eventually(t, 15*time.Second, "the watcher to sync", func() bool { return w.holds(wantEndpoints(state)) })

	// A ping may be just due: the worst case is a full interval before the
	// first unanswered ping, its timeout, the kill grace, the backoff (with
	// +20% jitter) and a start.
	bound := hostPingInterval + hostPingTimeout + hostKillGrace + 120*time.Millisecond + 3*time.Second
	old := b.sources()["files"]
	stopped := time.Now()
	if err := syscall.Kill(old.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(old.Pid, syscall.SIGKILL) }) // never leave it stopped
	var took time.Duration
	eventually(t, bound+5*time.Second, "the hung plugin to be replaced", func() bool {
		st := b.sources()["files"]
		if st.State == "running" && st.Pid != old.Pid && st.Pid != 0 {
			took = time.Since(stopped)
			return true
		}
		return false
	})
	figure(t, "hung plugin replaced after", "%v (documented bound %v + backoff + start; asserted ≤ %v)", took.Round(10*time.Millisecond),
		hostPingInterval+hostPingTimeout+hostKillGrace, bound)
	if took > bound {
		t.Errorf("the hung plugin was replaced after %v, over the bound %v", took, bound)
	}
	st := b.sources()["files"]
	if !strings.Contains(st.LastError, "health check") {
		t.Errorf("last_error = %q, want it to say the health check failed", st.LastError)
	}
	eventually(t, 10*time.Second, "the stopped process to be gone", func() bool { return !pidAlive(old.Pid, "plugin static") })

	state["a"] = append(state["a"], 1003)
	b.write("clusters.yaml", clustersFile(state))
	eventually(t, 10*time.Second, "an edit after the restart to reach the watcher", func() bool { return w.holds(wantEndpoints(state)) })
	if s := w.stats(); s.lost != 0 || s.removals != 0 {
		t.Errorf("while the plugin hung the watcher lost %d endpoints and %d clusters: %v", s.lost, s.removals, s.events)
	}
}

// TestReliabilityPluginStartupFailures: a plugin that fails at start-up,
// each way it can, is restarted with capped backoff, /debug/sources says
// why, and the other source is served all along.
func TestReliabilityPluginStartupFailures(t *testing.T) {
	bin := buildFaultPlugin(t)
	cases := []struct {
		mode string
		want string // in last_error
		// why is what a user needs to see in last_error to know the
		// cause; checked as a known bug where the host loses it.
		why string
	}{
		{mode: "exit", want: `plugin "bad"`, why: "refusing to start on purpose"},
		{mode: "handshake", want: "this is not a go-plugin handshake"},
		{mode: "apiversion", want: "speaks source API versions [99]"},
		// A plugin that rejects its configuration at start-up stops `run`
		// with FILE:LINE lines instead (TestReliabilityBrokenConfig).
	}
	const maxBackoff = 400 * time.Millisecond
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			state := map[string][]int{"good": {1001}}
			_, entry := newFaultPlugin(t, bin, t.TempDir(), "bad", tc.mode)
			b := startBridge(t, map[string]string{
				"plugins.yaml":  "aggregator:\n  ready_timeout: 1s\nplugins:\n  - name: good\n    type: static\n    config:\n      path: clusters.yaml\n" + entry,
				"clusters.yaml": clustersFile(state),
			})
			w := newWatcher(t, b.grpcAddr, "startup-"+tc.mode, false, true)
			eventually(t, 15*time.Second, "the good source to be served", func() bool { return w.holds(wantEndpoints(state)) })
			var st sourceStatus
			eventually(t, 20*time.Second, "several restarts", func() bool {
				st = b.sources()["bad"]
				return st.Restarts >= 6
			})
			if st.State == "running" {
				t.Errorf("state %q, want it never running", st.State)
			}
			if !strings.Contains(st.LastError, tc.want) {
				t.Errorf("last_error = %q, want it to contain %q", st.LastError, tc.want)
			}
			// Capped backoff: restarts are spaced by 50ms, 100ms, 200ms,
			// then 400ms (±20%) plus the start itself; never a hot loop and
			// never beyond the cap.
			t0 := time.Now()
			r0 := b.sources()["bad"].Restarts
			time.Sleep(3 * time.Second)
			r1 := b.sources()["bad"].Restarts
			rate := float64(r1-r0) / time.Since(t0).Seconds()
			figure(t, "start-up failure "+tc.mode, "%.1f restarts/s at the 400ms cap (max 1/0.32s = 3.1/s), last_error %q", rate, relFirstLine(st.LastError))
			if rate > 1/(0.8*maxBackoff.Seconds())+0.5 {
				t.Errorf("%.1f restarts/s: backoff not applied", rate)
			}
			if rate < 0.3 {
				t.Errorf("%.1f restarts/s: backoff beyond its %v cap", rate, maxBackoff)
			}
			if s := w.stats(); s.lost != 0 || s.removals != 0 {
				t.Errorf("the good source's clusters were disturbed: %v", s.events)
			}
			if tc.why != "" {
				knownBug(t, strings.Contains(st.LastError, tc.why) || strings.Contains(st.LastError, "exit status"),
					"internal/host: a plugin that exits before the handshake is reported only as %q in /debug/sources last_error: neither its exit status nor what it printed on stderr (%q) is kept", st.LastError, tc.why)
			}
		})
	}
}

// overlayBytes is a serialized Cluster overlay setting connect_timeout.
func overlayBytes(t testing.TB, d time.Duration) string {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&clusterv3.Cluster{ConnectTimeout: durationpb.New(d)})
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// TestReliabilityPluginGarbage feeds the aggregator, through a real plugin
// process, every kind of bad input a plugin can send. Each case checks
// that clients are served every good item (and keep the plugin's last good
// state when the plugin has to be restarted), and that an error names the
// plugin, the cluster and the item.
func TestReliabilityPluginGarbage(t *testing.T) {
	bin := buildFaultPlugin(t)
	okState := sourceUpdate(true, relCluster("faulty-ok", relEP("10.9.0.1", 80)))
	okHeld := map[string][]string{"faulty-ok": {"10.9.0.1:80"}}
	good := map[string][]string{"good": {"127.0.0.1:1001", "127.0.0.1:1002"}}
	with := func(extra map[string][]string) map[string][]string {
		out := map[string][]string{}
		for k, v := range good {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	type logWant []string // substrings of one log line
	cases := []struct {
		name  string
		mode  string
		steps []any
		// hold is what clients must hold in the end.
		hold map[string][]string
		// crash: the plugin must be restarted, with lastError in
		// /debug/sources.
		crash     bool
		lastError []string
		logs      []logWant
		rejected  map[string]uint64
	}{
		{
			name:      "invalid protobuf",
			steps:     []any{faultStep{"update": okState}, faultStep{"raw": "ffffffffffff"}},
			hold:      with(okHeld),
			crash:     true,
			lastError: []string{`plugin "bad"`, "unmarshal"},
		},
		{
			name: "invalid UTF-8 in a cluster name",
			// Update{clusters: [{name: "\xff\xfe"}]}
			steps:     []any{faultStep{"update": okState}, faultStep{"raw": "1a040a02fffe"}},
			hold:      with(okHeld),
			crash:     true,
			lastError: []string{`plugin "bad"`, "unmarshal"},
		},
		{
			name:      "message over the size limit",
			steps:     []any{faultStep{"update": okState}, faultStep{"pad": 17 << 20}},
			hold:      with(okHeld),
			crash:     true,
			lastError: []string{`plugin "bad"`, "larger than max"},
		},
		{
			name: "split update that changes kind midway",
			steps: []any{faultStep{"update": okState},
				faultStep{"part": map[string]any{"full": true, "more": true, "clusters": []any{relCluster("half", relEP("10.9.1.1", 80))}}},
				faultStep{"part": map[string]any{"full": false}}},
			hold:      with(okHeld),
			crash:     true,
			lastError: []string{`plugin "bad"`, "changes kind midway"},
		},
		{
			name: "stream ended by the plugin",
			steps: []any{faultStep{"update": okState}, faultStep{"sleep": "200ms"},
				faultStep{"end": "plugin lost its registry"}},
			hold:      with(okHeld),
			crash:     true,
			lastError: []string{`plugin "bad"`, "plugin lost its registry"},
		},
		{
			name: "bad endpoints among good ones",
			steps: []any{faultStep{"update": sourceUpdate(true, relCluster("mixed",
				relEP("10.0.0.1", 80),        // good
				relEP("not-an-ip", 80),       // invalid IP
				relEP("10.0.0.2", 0),         // port 0
				relEP("10.0.0.3", 70000),     // port over 65535
				relEP("10.0.0.1", 80),        // duplicate
				relEP("::ffff:10.0.0.1", 80), // the same address, IPv4-mapped
				relEP("fe80::1%eth0", 80),    // zoned address
				relEP("", 80),                // no address
				relEP("2001:db8::1", 443),    // good
				map[string]any{"address": "10.0.0.4", "port": 80, "health": 7}, // unknown health
			))}},
			hold: with(map[string][]string{"mixed": {"10.0.0.1:80", "[2001:db8::1]:443"}}),
			logs: []logWant{
				{`source "bad"`, `cluster "mixed"`, "not-an-ip", "not an IP address"},
				{`source "bad"`, `cluster "mixed"`, "10.0.0.2:0", "port 0 outside 1-65535"},
				{`source "bad"`, `cluster "mixed"`, "10.0.0.3:70000", "port 70000 outside 1-65535"},
				{`source "bad"`, `cluster "mixed"`, "endpoint 4 (10.0.0.1:80)", "duplicate"},
				{`source "bad"`, `cluster "mixed"`, "endpoint 5", "duplicate"},
				{`source "bad"`, `cluster "mixed"`, "fe80::1%eth0", "not an IP address"},
				{`source "bad"`, `cluster "mixed"`, "10.0.0.4:80", "unknown health value 7"},
			},
			rejected: map[string]uint64{"bad_address": 3, "bad_port": 2, "duplicate_endpoint": 2, "bad_health": 1},
		},
		{
			name: "empty cluster name and a cluster sent twice",
			steps: []any{faultStep{"update": sourceUpdate(true,
				relCluster("", relEP("10.0.1.1", 80)),
				relCluster("twice", relEP("10.0.1.2", 80)),
				relCluster("twice", relEP("10.0.1.3", 80)),
				relCluster("fine", relEP("10.0.1.4", 80)),
			)}},
			hold: with(map[string][]string{"twice": {"10.0.1.2:80"}, "fine": {"10.0.1.4:80"}}),
			logs: []logWant{
				{`source "bad"`, "empty name", "1 endpoints"},
				{`source "bad"`, `cluster "twice"`, "sent twice"},
			},
			rejected: map[string]uint64{"empty_cluster_name": 1, "duplicate_cluster": 1},
		},
		{
			name: "two sources claim conflicting cluster settings",
			steps: []any{faultStep{"update": sourceUpdate(true, map[string]any{"name": "good",
				"overlay": overlayBytes(t, time.Second), "endpoints": []any{relEP("10.0.2.1", 80)}})}},
			// The endpoints are the union; the settings come from one source.
			hold: map[string][]string{"good": {"10.0.2.1:80", "127.0.0.1:1001", "127.0.0.1:1002"}},
			logs: []logWant{
				{`cluster "good"`, `"bad"`, `"good"`, "different cluster settings"},
			},
			rejected: map[string]uint64{"conflict": 1},
		},
		{
			name: "an overlay that does not parse or sets what it may not",
			steps: []any{faultStep{"update": sourceUpdate(true,
				map[string]any{"name": "junk-overlay", "overlay": base64.StdEncoding.EncodeToString([]byte{0xff, 0xff, 0xff}), "endpoints": []any{relEP("10.0.3.1", 80)}},
				map[string]any{"name": "eds-overlay", "overlay": base64.StdEncoding.EncodeToString(relMarshal(t, &clusterv3.Cluster{Name: "other"})), "endpoints": []any{relEP("10.0.3.2", 80)}},
				relCluster("fine", relEP("10.0.3.3", 80)),
			)}},
			hold: with(map[string][]string{"fine": {"10.0.3.3:80"}}),
			logs: []logWant{
				{`source "bad"`, `cluster "junk-overlay"`, "overlay rejected"},
				{`source "bad"`, `cluster "eds-overlay"`, "overlay rejected"},
			},
			rejected: map[string]uint64{"bad_overlay": 2},
		},
		{
			name: "resources of unknown type, that do not parse, without a name",
			steps: []any{faultStep{"update": sourceUpdate(true, relCluster("fine", relEP("10.0.4.1", 80))), "resources": []any{
				map[string]any{"type": "type.googleapis.com/no.such.Type", "value": []byte("abc")},
				map[string]any{"type": "type.googleapis.com/google.protobuf.Empty"},
				map[string]any{"type": resource.ListenerType},
				map[string]any{"type": resource.RouteType, "value": []byte{0xff, 0xff, 0xff}},
			}}},
			hold: with(map[string][]string{"fine": {"10.0.4.1:80"}}),
			logs: []logWant{
				{`source "bad"`, "no.such.Type", "unknown type"},
				{`source "bad"`, "google.protobuf.Empty"},
				{`source "bad"`, resource.ListenerType, "empty name"},
				{`source "bad"`, resource.RouteType, "does not parse"},
			},
			rejected: map[string]uint64{"bad_resource": 4},
		},
		{
			name: "removals of clusters another source owns",
			steps: []any{faultStep{"update": sourceUpdate(true, relCluster("mine", relEP("10.0.5.1", 80)))},
				faultStep{"update": map[string]any{"full": false, "removedClusters": []any{"good", "mine", "never-existed"}}}},
			hold: good,
		},
		{
			name: "weights that overflow and sparse priorities",
			steps: []any{faultStep{"update": sourceUpdate(true, relCluster("heavy",
				map[string]any{"address": "10.0.6.1", "port": 80, "weight": 4294967295, "priority": 7},
				map[string]any{"address": "10.0.6.2", "port": 80, "weight": 4294967295, "priority": 7},
				map[string]any{"address": "10.0.6.3", "port": 80, "weight": 4294967295, "priority": 4000000000},
			))}},
			hold: with(map[string][]string{"heavy": {"10.0.6.1:80", "10.0.6.2:80", "10.0.6.3:80"}}),
		},
		{
			name:  "a change set before any full state",
			steps: []any{faultStep{"update": sourceUpdate(false, relCluster("early", relEP("10.0.7.1", 80)))}},
			hold:  with(map[string][]string{"early": {"10.0.7.1:80"}}),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			mode := tc.mode
			if mode == "" {
				mode = "serve"
			}
			_, entry := newFaultPlugin(t, bin, dir, "bad", mode, tc.steps...)
			b := startBridge(t, map[string]string{
				"plugins.yaml":  "aggregator:\n  ready_timeout: 2s\nplugins:\n  - name: good\n    type: static\n    config:\n      path: clusters.yaml\n" + entry,
				"clusters.yaml": "clusters:\n  - name: good\n    connect_timeout: 0.25s\n    endpoints:\n      - {address: 127.0.0.1, port: 1001}\n      - {address: 127.0.0.1, port: 1002}\n",
			})
			w := newWatcher(t, b.grpcAddr, "garbage", true, false)
			eventually(t, 20*time.Second, "clients to hold every good item", func() bool { return w.holds(tc.hold) })
			if tc.crash {
				var st sourceStatus
				eventually(t, 20*time.Second, "the plugin to be restarted with the error", func() bool {
					st = b.sources()["bad"]
					return st.Restarts >= 2 && relContainsAll(st.LastError, tc.lastError...)
				})
				t.Logf("last_error: %s", st.LastError)
				// Its last good state was served all along.
				if s := w.stats(); s.removals != 0 {
					t.Errorf("clients saw removals while the plugin crashed: %v", s.events)
				}
				if !w.holds(tc.hold) {
					t.Errorf("after the restarts clients hold %v, want %v", w.snapshot(), tc.hold)
				}
			}
			for _, lw := range tc.logs {
				if len(b.logLines(lw...)) == 0 {
					t.Errorf("no log line contains all of %q", lw)
				}
			}
			if tc.rejected != nil {
				got := b.debugSources().Rejected
				for reason, n := range tc.rejected {
					if got[reason] < n {
						t.Errorf("/debug/sources rejected[%s] = %d, want at least %d (all: %v)", reason, got[reason], n, got)
					}
				}
			}
			if tc.name == "weights that overflow and sparse priorities" {
				checkHeavy(t, b)
			}
		})
	}
}

func relFirstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

func relContainsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

func relMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkHeavy: the served assignment of "heavy" is valid for Envoy and
// gRPC: priorities 0 and 1, locality weights within uint32.
func checkHeavy(t *testing.T, b *bridge) {
	s := newSotw(t, dial(t, b.grpcAddr), "heavy")
	s.subscribe(resource.EndpointType, "heavy")
	r := s.recvType(resource.EndpointType, 10*time.Second)
	c := cla(t, r.GetResources()[0])
	if err := c.ValidateAll(); err != nil {
		t.Fatalf("heavy: invalid assignment: %v", err)
	}
	var prios []uint32
	for _, l := range c.GetEndpoints() {
		prios = append(prios, l.GetPriority())
		var sum uint64
		for _, e := range l.GetLbEndpoints() {
			sum += uint64(e.GetLoadBalancingWeight().GetValue())
		}
		if sum > 1<<32-1 {
			t.Errorf("locality weights sum to %d", sum)
		}
	}
	slices.Sort(prios)
	if !slices.Equal(slices.Compact(prios), []uint32{0, 1}) {
		t.Errorf("priorities %v, want 0 and 1", prios)
	}
	_ = endpointv3.ClusterLoadAssignment{}
}

// TestReliabilityPluginHugeCluster: a plugin that sends 1,000,000 endpoints.
// Through the SDK, in one cluster; without it, spread over 1,000 clusters.
// The bridge must stay up and keep serving every good item; what it cannot
// take must be reported naming the plugin and the cluster.
func TestReliabilityPluginHugeCluster(t *testing.T) {
	bin := buildFaultPlugin(t)
	const n = 1_000_000
	t.Run("one cluster through the SDK", func(t *testing.T) {
		dir := t.TempDir()
		// A first full state, then one that replaces it with the huge
		// cluster.
		_, entry := newFaultPlugin(t, bin, dir, "huge", "sdk",
			faultStep{"update": sourceUpdate(true, relCluster("small", relEP("10.8.0.1", 80)))},
			faultStep{"sleep": "300ms"},
			faultStep{"big": map[string]any{"prefix": "huge-", "clusters": 1, "endpoints": n, "port": 80}})
		b := startBridge(t, map[string]string{
			"plugins.yaml":  "aggregator:\n  ready_timeout: 5s\nplugins:\n  - name: good\n    type: static\n    config:\n      path: clusters.yaml\n" + entry,
			"clusters.yaml": clustersFile(map[string][]int{"good": {1001}}),
		})
		w := newWatcher(t, b.grpcAddr, "huge", false, false)
		eventually(t, 20*time.Second, "the good items", func() bool {
			s := w.snapshot()
			return len(s["good"]) == 1 && len(s["small"]) == 1
		})
		var st sourceStatus
		var served bool
		eventually(t, 60*time.Second, "the huge cluster to be served or refused", func() bool {
			st = b.sources()["huge"]
			served = len(w.snapshot()["huge-0000"]) == n
			return served || st.Restarts >= 1
		})
		figure(t, "1M endpoints in one cluster via SDK", "%d endpoints: served=%v restarts=%d last_error=%q", n, served, st.Restarts, st.LastError)
		if s := w.snapshot(); len(s["good"]) != 1 {
			t.Errorf("the other source's cluster was lost (%d endpoints)", len(s["good"]))
		}
		if !served {
			knownBug(t, strings.Contains(st.LastError, `"huge-0000"`),
				"internal/wire.Split cuts updates only between clusters, so one cluster of %d endpoints (over wire.MaxMessageSize) can never reach the host: the SDK's Send fails, the plugin is restarted in a loop, and last_error (%q) gives a size but not the cluster", n, st.LastError)
		}
	})
	t.Run("spread over clusters without the SDK", func(t *testing.T) {
		if !fullProfile() {
			t.Skip("full profile only (XDSBRIDGE_PROFILE=full)")
		}
		dir := t.TempDir()
		_, entry := newFaultPlugin(t, bin, dir, "wide", "serve",
			faultStep{"big": map[string]any{"prefix": "wide-", "clusters": 1000, "endpoints": n / 1000, "port": 80}})
		b := startBridge(t, map[string]string{
			"plugins.yaml":  "plugins:\n  - name: good\n    type: static\n    config:\n      path: clusters.yaml\n" + entry,
			"clusters.yaml": clustersFile(map[string][]int{"good": {1001}}),
		})
		start := time.Now()
		w := newWatcher(t, b.grpcAddr, "wide", true, false)
		eventually(t, 120*time.Second, "every endpoint to reach the client", func() bool {
			s := w.snapshot()
			total := 0
			for _, eps := range s {
				total += len(eps)
			}
			return len(s) == 1001 && total == n+1
		})
		figure(t, "1M endpoints over 1,000 clusters", "%d endpoints served to a delta client in %v", n, time.Since(start).Round(time.Millisecond))
	})
}

// TestReliabilityResourceShadowsCluster: a plugin sends an Envoy Cluster as
// a raw resource under the name of a cluster another source provides, then
// withdraws it. Clients must never lose the other source's cluster.
func TestReliabilityResourceShadowsCluster(t *testing.T) {
	bin := buildFaultPlugin(t)
	dir := t.TempDir()
	raw := relMarshal(t, &clusterv3.Cluster{Name: "good", ConnectTimeout: durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}})
	fp, entry := newFaultPlugin(t, bin, dir, "bad", "serve",
		faultStep{"update": sourceUpdate(true), "resources": []any{map[string]any{"type": resource.ClusterType, "value": raw}}})
	b := startBridge(t, map[string]string{
		"plugins.yaml":  "plugins:\n  - name: good\n    type: static\n    config:\n      path: clusters.yaml\n" + entry,
		"clusters.yaml": clustersFile(map[string][]int{"good": {1001}}),
	})
	w := newWatcher(t, b.grpcAddr, "shadow", true, false)
	eventually(t, 15*time.Second, "cluster good", func() bool { return len(w.snapshot()["good"]) == 1 })
	fp.add(faultStep{"update": map[string]any{"full": false, "removedResources": []any{map[string]any{"typeUrl": resource.ClusterType, "name": "good"}}}})
	time.Sleep(time.Second)
	s := w.stats()
	var served []string
	for _, r := range b.resources().Resources {
		if r.Type == resource.ClusterType {
			served = append(served, r.Name+"@"+strings.Join(r.Sources, ","))
		}
	}
	knownBug(t, s.removals == 0 && slices.Contains(served, "good@good"),
		"aggregator/publish.Publisher: a plugin's raw Cluster resource named like another source's cluster replaces the generated cluster in the store, and removing the resource removes the cluster from clients (removals seen: %v; CDS served: %v)", s.events, served)
}
