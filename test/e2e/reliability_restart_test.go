package e2e

// Restarts and replicas: clients of a restarted bridge, or moved to another
// replica, see nothing change; replicas agree byte for byte; and a
// reconnect storm resyncs within a measured bound.

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// replicaFile is a static file with clusters, a listener and a route, so
// every type is compared.
func replicaFile(clusters map[string][]int) string {
	return clustersFile(clusters) + `resources:
  - "@type": type.googleapis.com/envoy.config.listener.v3.Listener
    name: listener_0
    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
    filter_chains:
      - filters:
          - name: envoy.filters.network.http_connection_manager
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
              stat_prefix: ingress
              rds: {route_config_name: local_route, config_source: {ads: {}, resource_api_version: V3}}
              http_filters:
                - name: envoy.filters.http.router
                  typed_config:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  - "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
    name: local_route
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: "/"}
            route: {cluster: a}
`
}

// TestReliabilityBridgeRestart restarts the bridge under connected SotW and
// delta clients, cleanly and by SIGKILL: they reconnect, get resources with
// the same versions and bytes — nothing changes for them — and follow the
// next edit.
func TestReliabilityBridgeRestart(t *testing.T) {
	state := map[string][]int{"a": {1001, 1002}, "b": {2001}, "c": {3001}}
	b := startBridge(t, map[string]string{"plugins.yaml": staticPlugins, "clusters.yaml": replicaFile(state)})
	ws := []*watcher{newWatcher(t, b.grpcAddr, "restart-sotw", false, true), newWatcher(t, b.grpcAddr, "restart-delta", true, true)}
	for _, w := range ws {
		eventually(t, 15*time.Second, w.node+" to sync", func() bool { return w.holds(wantEndpoints(state)) })
	}
	before := b.resources()
	for i, how := range []string{"SIGTERM", "SIGKILL"} {
		sessions := make([]int, len(ws))
		for j, w := range ws {
			sessions[j] = w.currentSession()
		}
		start := time.Now()
		if how == "SIGTERM" {
			b.restart()
		} else {
			b.kill()
			b.done = make(chan struct{})
			b.start()
		}
		for j, w := range ws {
			eventually(t, 20*time.Second, w.node+" to resync after "+how, func() bool { return w.resyncedAfter(sessions[j]) })
		}
		figure(t, "bridge restart ("+how+")", "clients resynced %v after the restart began", time.Since(start).Round(time.Millisecond))
		after := b.resources()
		if !sameResources(before, after) {
			t.Errorf("after %s the bridge serves other versions: %v vs %v", how, before.Versions, after.Versions)
		}
		for _, w := range ws {
			if s := w.stats(); s.changes != 0 || s.removals != 0 || s.lost != 0 {
				t.Errorf("%s after %s: %d resources changed, %d removed, %d endpoints lost: %v", w.node, how, s.changes, s.removals, s.lost, s.events)
			}
		}
		// The reconnected streams are live.
		state["a"] = append(state["a"], 1100+i)
		b.write("clusters.yaml", replicaFile(state))
		for _, w := range ws {
			eventually(t, 10*time.Second, w.node+" to follow an edit", func() bool { return w.holds(wantEndpoints(state)) })
		}
		for _, w := range ws {
			w.mu.Lock()
			w.changes = 0
			w.mu.Unlock()
		}
		before = b.resources()
	}
}

// sameResources compares two /debug/resources answers: types, names,
// versions and content.
func sameResources(x, y debugResources) bool {
	if len(x.Versions) != len(y.Versions) || len(x.Resources) != len(y.Resources) {
		return false
	}
	for k, v := range x.Versions {
		if y.Versions[k] != v {
			return false
		}
	}
	for i := range x.Resources {
		a, b := x.Resources[i], y.Resources[i]
		if a.Type != b.Type || a.Name != b.Name || a.Version != b.Version || !bytes.Equal(a.Resource, b.Resource) {
			return false
		}
	}
	return true
}

// sotwAll fetches every type over one fresh SotW stream: type → response.
func sotwAll(t *testing.T, addr string, clusters []string) map[string]*discovery.DiscoveryResponse {
	t.Helper()
	s := newSotw(t, dial(t, addr), "compare")
	out := map[string]*discovery.DiscoveryResponse{}
	for _, req := range []struct {
		typ   string
		names []string
	}{{resource.ClusterType, nil}, {resource.EndpointType, clusters}, {resource.ListenerType, nil}, {resource.RouteType, []string{"local_route"}}} {
		s.subscribe(req.typ, req.names...)
		r := s.recvType(req.typ, 10*time.Second)
		s.ack(r, req.names...)
		out[req.typ] = r
	}
	return out
}

// TestReliabilityReplicas: two bridges whose static plugins read one file
// serve byte-identical resources under identical versions, over SotW and
// delta; a client moved from one to the other sees no change; and they
// still agree after an edit.
func TestReliabilityReplicas(t *testing.T) {
	shared := t.TempDir()
	file := filepath.Join(shared, "clusters.yaml")
	state := map[string][]int{"a": {1001, 1002}, "b": {2001}, "c": {3001, 3002, 3003}}
	write := func() {
		if err := os.WriteFile(file+".tmp", []byte(replicaFile(state)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
	write()
	plugins := fmt.Sprintf("plugins:\n  - name: files\n    type: static\n    config:\n      path: %q\n", file)
	r1 := startBridge(t, map[string]string{"plugins.yaml": plugins})
	r2 := startBridge(t, map[string]string{"plugins.yaml": plugins})
	names := relKeys(state)

	compare := func(when string) {
		t.Helper()
		eventually(t, 10*time.Second, "the replicas to agree "+when, func() bool { return sameResources(r1.resources(), r2.resources()) })
		x, y := sotwAll(t, r1.grpcAddr, names), sotwAll(t, r2.grpcAddr, names)
		for typ, rx := range x {
			ry := y[typ]
			if rx.GetVersionInfo() != ry.GetVersionInfo() || len(rx.GetResources()) != len(ry.GetResources()) {
				t.Fatalf("%s %s: versions %q and %q, %d and %d resources", when, typ, rx.GetVersionInfo(), ry.GetVersionInfo(), len(rx.GetResources()), len(ry.GetResources()))
			}
			for i := range rx.GetResources() {
				if !bytes.Equal(rx.GetResources()[i].GetValue(), ry.GetResources()[i].GetValue()) {
					t.Fatalf("%s %s: resource %d differs between replicas", when, typ, i)
				}
			}
		}
	}
	compare("at start")

	ws := []*watcher{newWatcher(t, r1.grpcAddr, "mover-sotw", false, true), newWatcher(t, r1.grpcAddr, "mover-delta", true, true)}
	for _, w := range ws {
		eventually(t, 15*time.Second, w.node+" to sync on replica 1", func() bool { return w.holds(wantEndpoints(state)) })
	}
	for _, w := range ws {
		n := w.currentSession()
		w.moveTo(r2.grpcAddr)
		eventually(t, 15*time.Second, w.node+" to resync on replica 2", func() bool { return w.resyncedAfter(n) })
		if s := w.stats(); s.changes != 0 || s.removals != 0 || s.lost != 0 {
			t.Errorf("%s moved to replica 2: %d resources changed, %d removed: %v", w.node, s.changes, s.removals, s.events)
		}
	}

	state["b"] = []int{2001, 2002}
	state["d"] = []int{4001}
	write()
	for _, w := range ws {
		eventually(t, 10*time.Second, w.node+" to follow the edit on replica 2", func() bool { return w.holds(wantEndpoints(state)) })
	}
	names = relKeys(state)
	compare("after an edit")
	v := r1.resources()
	figure(t, "replicas", "2 replicas agree on %d resources and %d type versions, before and after an edit; moved clients saw 0 changes", len(v.Resources), len(v.Versions))
}

// TestReliabilityReconnectStorm: many clients connected to a bridge that
// is killed and started again reconnect at once. All must be resynced
// within a bound, with what they held unchanged, and the admin endpoints
// must answer throughout. The total request rate limit is set below the
// storm's rate: requests over it must wait (counted, and pending while
// they do), none may fail, and admin must not wait with them.
func TestReliabilityReconnectStorm(t *testing.T) {
	n := pick(300, 1000)
	// Each client sends about four requests to resync (a request and an
	// ACK per type): 1,200 (4,000) requests, over 3 (6) seconds at the
	// limit.
	rate, burst := pick(400, 700), 50
	state := map[string][]int{}
	for c := range 20 {
		state[fmt.Sprintf("svc-%02d", c)] = []int{10000 + c, 11000 + c, 12000 + c}
	}
	cfg := fmt.Sprintf("xds:\n  rate_limit:\n    total: {rate: %d, burst: %d}\n", rate, burst) + staticPlugins
	b := startBridge(t, map[string]string{"plugins.yaml": cfg, "clusters.yaml": replicaFile(state)})
	want := wantEndpoints(state)
	ws := make([]*watcher, n)
	for i := range ws {
		ws[i] = newWatcher(t, b.grpcAddr, fmt.Sprintf("storm-%04d", i), i%2 == 1, true)
	}
	eventually(t, 120*time.Second, "every client to sync", func() bool {
		for _, w := range ws {
			if !w.holds(want) {
				return false
			}
		}
		return true
	})
	sessions := make([]int, n)
	for i, w := range ws {
		sessions[i] = w.currentSession()
	}

	b.kill()
	b.done = make(chan struct{})
	// Probe the admin endpoints from the moment the bridge starts.
	var (
		probeMu     sync.Mutex
		worst       time.Duration
		failures    int
		probes      int
		pendingSeen float64 // the most xdsbridge_xds_pending_requests seen
		stop        = make(chan struct{})
		wg          sync.WaitGroup
	)
	started := time.Now()
	b.start() // returns once /readyz answers 200
	ready := time.Now()
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			for _, p := range []string{"/healthz", "/readyz", "/debug/sources"} {
				code, took := b.tryGet(p, 10*time.Second)
				probeMu.Lock()
				probes++
				worst = max(worst, took)
				if code != http.StatusOK {
					failures++
				}
				probeMu.Unlock()
			}
			body, code, took := b.getBody("/metrics", 10*time.Second)
			pending, _ := findSample(bytes.NewReader(body), "xdsbridge_xds_pending_requests")
			probeMu.Lock()
			probes++
			worst = max(worst, took)
			if code != http.StatusOK {
				failures++
			}
			pendingSeen = max(pendingSeen, pending)
			probeMu.Unlock()
		}
	})
	var resync time.Duration
	deadline := time.Now().Add(pick(60*time.Second, 120*time.Second))
	for {
		done := 0
		for i, w := range ws {
			if w.resyncedAfter(sessions[i]) {
				done++
			}
		}
		if done == n {
			resync = time.Since(ready)
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("%d of %d clients resynced within %v of the restart", done, n, time.Since(ready))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a few more probes after the storm
	close(stop)
	wg.Wait()

	changed, removed := 0, 0
	for _, w := range ws {
		s := w.stats()
		changed += s.changes
		removed += s.removals + s.lost
		if !w.holds(want) {
			t.Errorf("%s holds something else after the storm", w.node)
		}
	}
	if changed != 0 || removed != 0 {
		t.Errorf("after the storm: %d resources changed, %d removals or lost endpoints", changed, removed)
	}
	probeMu.Lock()
	defer probeMu.Unlock()
	figure(t, "reconnect storm", "%d clients (half SotW, half delta) resynced %v after /readyz (%v after the process started); admin: %d probes, slowest %v, %d failed",
		n, resync.Round(time.Millisecond), (ready.Sub(started) + resync).Round(time.Millisecond),
		probes, worst.Round(time.Millisecond), failures)
	if failures > 0 || worst > 2*time.Second {
		t.Errorf("admin endpoints during the storm: %d failures, slowest %v", failures, worst)
	}
	if bound := 30 * time.Second; resync > bound {
		t.Errorf("resync took %v, over %v", resync, bound)
	}
	// The limit: requests over it waited, none failed. The clients' last
	// ACKs may still wait once they hold everything; let them through.
	// Every request counted went through the limiter first, and only
	// burst of them without waiting, so the restarted process has been
	// up at least (requests - burst) / rate.
	var body []byte
	eventually(t, 30*time.Second, "the delayed requests to go through", func() bool {
		page, code, _ := b.getBody("/metrics", 10*time.Second)
		pending, ok := findSample(bytes.NewReader(page), "xdsbridge_xds_pending_requests")
		body = page
		return code == http.StatusOK && ok && pending == 0
	})
	upFor := time.Since(started)
	delayed, _ := findSample(bytes.NewReader(body), "xdsbridge_xds_rate_limit_enforced_total", `scope="total"`)
	requests := sumSamples(body, "xdsbridge_xds_requests_total")
	disconnects := sumSamples(body, "xdsbridge_xds_disconnects_total")
	floor := time.Duration((requests - float64(burst)) / float64(rate) * float64(time.Second))
	figure(t, "rate limiting during the storm", "total limit %d/s (burst %d): %.0f requests, %.0f delayed, up to %.0f pending at once; process up %v (floor at the limit %v); %.0f disconnects",
		rate, burst, requests, delayed, pendingSeen, upFor.Round(time.Millisecond), floor.Round(time.Millisecond), disconnects)
	if requests < float64(2*n) {
		t.Errorf("%.0f requests counted for %d resynced clients", requests, n)
	}
	if delayed == 0 {
		t.Errorf("xdsbridge_xds_rate_limit_enforced_total{scope=\"total\"} = 0 for %.0f requests over a %d/s limit (burst %d)", requests, rate, burst)
	}
	if pendingSeen == 0 {
		t.Errorf("xdsbridge_xds_pending_requests never rose above 0 during the storm")
	}
	if upFor < floor*9/10 {
		t.Errorf("%.0f requests went through a %d/s limit (burst %d) in %v, faster than the limit allows (%v)", requests, rate, burst, upFor, floor)
	}
	if disconnects != 0 {
		t.Errorf("%.0f clients were disconnected after the restart: a delayed request must wait, not fail", disconnects)
	}
}
