package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdsbridge/xdsbridge/sdk/sdktest"
	"github.com/xdsbridge/xdsbridge/test/consul"
	"github.com/xdsbridge/xdsbridge/test/dnsserver"
)

// hostPIDEnv is the variable in which the host names itself to its plugins
// (internal/wire.EnvHostPID).
const hostPIDEnv = "XDSBRIDGE_PLUGIN_HOST_PID"

// procStat returns a process's parent pid and state letter from
// /proc/PID/stat; ok is false when there is no such process.
func procStat(pid int) (ppid int, state byte, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	// pid (comm) state ppid …; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[0][0], true
}

// live reports whether pid is a process that has not exited (a zombie
// has: it only waits to be reaped).
func live(pid int) bool {
	_, state, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X'
}

// allPids lists the processes in /proc.
func allPids(t testing.TB) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// descendants returns the live processes below pid.
func descendants(t testing.TB, pid int) []int {
	t.Helper()
	children := map[int][]int{}
	for _, p := range allPids(t) {
		if ppid, _, ok := procStat(p); ok && live(p) {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	for queue := children[pid]; len(queue) > 0; queue = queue[1:] {
		out = append(out, queue[0])
		queue = append(queue, children[queue[0]]...)
	}
	slices.Sort(out)
	return out
}

// hostedBy returns the live processes whose environment names one of
// hosts as their plugin host: every plugin those bridges started, wherever
// it was re-parented to.
func hostedBy(t testing.TB, hosts []int) []int {
	t.Helper()
	var out []int
	for _, p := range allPids(t) {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p))
		if err != nil || !live(p) {
			continue
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			v, ok := strings.CutPrefix(kv, hostPIDEnv+"=")
			if !ok {
				continue
			}
			if pid, err := strconv.Atoi(v); err == nil && slices.Contains(hosts, pid) {
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	return out
}

// cmdlines describes pids for a failure message.
func cmdlines(pids []int) string {
	var b strings.Builder
	for _, p := range pids {
		cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		fmt.Fprintf(&b, "\n  %d: %s", p, strings.ReplaceAll(string(cl), "\x00", " "))
	}
	return b.String()
}

// sourcePids returns the pid of every source's plugin, once all of names
// run.
func (b *bridge) sourcePids(names ...string) []int {
	b.t.Helper()
	var pids []int
	eventually(b.t, 20*time.Second, fmt.Sprintf("plugins %v to run", names), func() bool {
		pids = pids[:0]
		src := b.sources()
		for _, n := range names {
			if src[n].State != "running" || src[n].Pid == 0 {
				return false
			}
			pids = append(pids, src[n].Pid)
		}
		return true
	})
	slices.Sort(pids)
	return pids
}

// registryServer serves one service in httpregistry's format.
func registryServer(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"services": [{"name": "reg", "endpoints": [{"address": "127.0.0.1", "port": 7001}]}]}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestPluginsDieWithBridge: SIGKILL the bridge while the static, dns (real
// BIND), consul (real agent) and a third-party SDK plugin run, the latter
// also behind a shell wrapper that keeps it out of reach of the kernel's
// parent-death signal (the SDK's watchdog ends it), and a plugin that does
// not use the SDK (the fault plugin's own protocol code; only the kernel's
// signal ends it): every plugin process is gone within 2 s.
func TestPluginsDieWithBridge(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a consul agent and named")
	}
	agent := consul.Start(t, consul.Options{})
	dnsSrv := dnsserver.Start(t, dnsserver.Config{Records: []string{"web 60 IN A 127.0.0.1"}})
	registry := sdktest.Build(t, "../../examples/httpregistry")
	url := registryServer(t)
	_, nosdk := newFaultPlugin(t, buildFaultPlugin(t), t.TempDir(), "nosdk", "serve",
		faultStep{"update": sourceUpdate(true, relCluster("n", relEP("127.0.0.1", 9001)))})

	b := startBridge(t, map[string]string{
		"clusters.yaml": clustersFile(map[string][]int{"a": {1001}}),
		"plugins.yaml": fmt.Sprintf(`plugins:
  - name: files
    type: static
    config: {path: clusters.yaml}
  - name: dns
    type: dns
    config:
      servers: [%s]
      names: [{name: web.%s, cluster: web}]
      port: 80
  - name: consul
    type: consul
    config: {address: %s, wait: 2s}
  - name: registry
    command: [%q]
    config: {url: %q}
  - name: wrapped
    command: [/bin/sh, -c, '"$0" & wait', %q]
    config: {url: %q}
%s`, dnsSrv.Addr(), dnsSrv.Zone(), agent.Addr, registry, url, registry, url, nosdk)})

	b.sourcePids("files", "dns", "consul", "registry", "wrapped", "nosdk")
	plugins := descendants(t, b.cmd.Process.Pid)
	// Six plugins, and the wrapper's shell.
	if len(plugins) != 7 {
		t.Fatalf("the bridge has %d processes below it, want 7 (6 plugins, 1 wrapper shell):%s", len(plugins), cmdlines(plugins))
	}
	if got := hostedBy(t, []int{b.cmd.Process.Pid}); !slices.Equal(got, plugins) {
		t.Fatalf("processes naming the bridge as their host %v, want its descendants %v", got, plugins)
	}

	killed := time.Now()
	b.kill()
	var left []int
	for {
		left = slices.DeleteFunc(slices.Clone(plugins), func(p int) bool { return !live(p) })
		if len(left) == 0 || time.Since(killed) > 2*time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Cleanup(func() {
			for _, p := range left {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		})
		t.Fatalf("2s after the bridge was killed, plugin processes still run:%s", cmdlines(left))
	}
	figure(t, "all plugin processes gone after the bridge's SIGKILL in", "%v", time.Since(killed).Round(time.Millisecond))
}

// TestPluginsBridgeRestartLoop: 20 cycles of SIGKILL and start leave
// exactly the last bridge's plugins running, and a plugin process some
// other host started is left alone all along.
func TestPluginsBridgeRestartLoop(t *testing.T) {
	const cycles = 20
	// A decoy: a built-in plugin process, started (as a host would) by
	// this test, not by any bridge.
	decoy := exec.Command(bridgeBin, "plugin", "static")
	decoy.Env = []string{"XDSBRIDGE_PLUGIN=c1f3a0c2-source-plugin", "PLUGIN_PROTOCOL_VERSIONS=1", "PLUGIN_MIN_PORT=10000", "PLUGIN_MAX_PORT=25000",
		fmt.Sprintf("%s=%d", hostPIDEnv, os.Getpid()), "TMPDIR=" + t.TempDir()}
	if err := decoy.Start(); err != nil {
		t.Fatal(err)
	}
	decoyDone := make(chan error, 1)
	go func() { decoyDone <- decoy.Wait() }()
	t.Cleanup(func() { _ = decoy.Process.Kill(); <-decoyDone })

	b := startBridge(t, map[string]string{
		"clusters.yaml": clustersFile(map[string][]int{"a": {1001}}),
		"plugins.yaml":  "plugins:\n  - name: one\n    type: static\n    config: {path: clusters.yaml}\n  - name: two\n    type: static\n    config: {path: clusters.yaml}\n",
	})
	var hosts []int
	t.Cleanup(func() { // never leave a plugin behind, even when the test fails
		for _, p := range hostedBy(t, hosts) {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})
	for i := range cycles {
		hosts = append(hosts, b.cmd.Process.Pid)
		b.sourcePids("one", "two")
		if i == cycles-1 {
			break
		}
		b.kill()
		b.done = make(chan struct{})
		b.start()
	}
	want := b.sourcePids("one", "two")
	// The last bridge's plugins are running; the others' are gone or
	// going (the kernel kills them as their host dies).
	var got []int
	eventually(t, 2*time.Second, "only the last bridge's plugins to run", func() bool {
		got = hostedBy(t, hosts)
		return slices.Equal(got, want)
	})
	if len(got) != 2 {
		t.Fatalf("after %d SIGKILL+start cycles, plugin processes:%s\nwant the 2 of the last bridge", cycles, cmdlines(got))
	}
	select {
	case err := <-decoyDone:
		t.Fatalf("a plugin process no bridge started ended during the restarts: %v", err)
	default:
	}
}

// TestPluginSIGTERM: a plugin process sent SIGTERM stops its source and
// exits, built-in or third-party, and the host restarts it with backoff as
// after a crash. SIGINT is ignored: Ctrl-C in a terminal is the host's.
func TestPluginSIGTERM(t *testing.T) {
	registry := sdktest.Build(t, "../../examples/httpregistry")
	url := registryServer(t)
	b := startBridge(t, map[string]string{
		"clusters.yaml": clustersFile(map[string][]int{"a": {1001}}),
		"plugins.yaml": fmt.Sprintf(`plugins:
  - name: files
    type: static
    restart: {initial_backoff: 300ms, max_backoff: 1s}
    config: {path: clusters.yaml}
  - name: registry
    command: [%q]
    restart: {initial_backoff: 300ms, max_backoff: 1s}
    config: {url: %q}
`, registry, url)})

	for _, name := range []string{"files", "registry"} {
		t.Run(name, func(t *testing.T) {
			old := b.sources()[name]
			if old.State != "running" || old.Pid == 0 {
				t.Fatalf("%s: %+v, want it running", name, old)
			}
			if err := syscall.Kill(old.Pid, syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			if !live(old.Pid) {
				t.Fatalf("the plugin exited on SIGINT; go-plugin's plugins ignore it")
			}

			sent := time.Now()
			if err := syscall.Kill(old.Pid, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "the plugin to exit on SIGTERM", func() bool { return !live(old.Pid) })
			exited := time.Since(sent)
			var now sourceStatus
			eventually(t, 10*time.Second, "the host to restart the plugin", func() bool {
				now = b.sources()[name]
				return now.State == "running" && now.Pid != 0 && now.Pid != old.Pid
			})
			restarted := time.Since(sent)
			if now.Restarts != old.Restarts+1 {
				t.Errorf("restarts = %d, want %d", now.Restarts, old.Restarts+1)
			}
			// Backoff: initial_backoff 300ms less 20%% jitter.
			if restarted < 240*time.Millisecond {
				t.Errorf("restarted %v after SIGTERM, before its backoff", restarted)
			}
			if len(b.logLines("plugin stopped; restarting", "source="+name)) == 0 {
				t.Errorf("no log line says the host restarts %s", name)
			}
			figure(t, name+" exited after SIGTERM in", "%v; running again after %v", exited.Round(time.Millisecond), restarted.Round(time.Millisecond))
		})
	}
}

// TestStaleSource: a source that declares a max_silence and then stops
// sending while its process still answers health checks is marked stale in
// /debug/sources and xdsbridge_source_stale, and restarted when its entry
// says restart_on_stale; a source that keeps reporting progress is not.
func TestStaleSource(t *testing.T) {
	bin := buildFaultPlugin(t)
	dir := t.TempDir()
	full := faultStep{"update": sourceUpdate(true, relCluster("c", relEP("127.0.0.1", 9001)))}
	block := faultStep{"block": true}
	beat := []any{full}
	for range 15 { // 3 s of progress every 200 ms, then stuck too
		beat = append(beat, faultStep{"sleep": "200ms"}, faultStep{"update": map[string]any{"status": map[string]any{"state": "CONNECTED"}}})
	}
	beat = append(beat, block)
	stuck, stuckEntry := newFaultPlugin(t, bin, dir, "stuck", "serve", full, block)
	_, restartedEntry := newFaultPlugin(t, bin, dir, "restarted", "sdk", full, block)
	_, beatingEntry := newFaultPlugin(t, bin, dir, "beating", "serve", beat...)
	withSilence := func(entry string) string {
		return strings.Replace(entry, "-mode,", "-max-silence, 1s, -mode,", 1)
	}
	b := &bridge{t: t, dir: dir, grpcAddr: freePort(t), restAddr: freePort(t), adminAddr: freePort(t), log: &syncBuffer{}, done: make(chan struct{})}
	b.write("plugins.yaml", fmt.Sprintf("xds:\n  grpc_address: %s\n  rest_address: %s\nadmin:\n  address: %s\nplugins:\n%s%s    restart_on_stale: true\n%s",
		b.grpcAddr, b.restAddr, b.adminAddr, withSilence(stuckEntry), withSilence(restartedEntry), withSilence(beatingEntry)))
	b.start()
	b.sourcePids("stuck", "restarted", "beating")
	stuckPid, restartedPid := b.sources()["stuck"].Pid, b.sources()["restarted"].Pid
	stuckStarts := len(stuck.starts()) // `validate` before the run starts it too

	get := b.sources
	var at map[string]sourceStatus
	eventually(t, 10*time.Second, "stuck to be marked stale", func() bool {
		at = get()
		return at["stuck"].Stale
	})
	if at["beating"].Stale {
		t.Errorf("beating is stale while it reports progress every 200ms: %+v", at["beating"])
	}
	if s := at["stuck"]; s.MaxSilence != "1s" || s.Connected {
		t.Errorf("stuck: %+v; want max_silence 1s, not connected", s)
	}
	if v, ok := b.metric("xdsbridge_source_stale", `source="stuck"`); !ok || v != 1 {
		t.Errorf("xdsbridge_source_stale{source=\"stuck\"} = %v (present %v), want 1", v, ok)
	}
	if v, ok := b.metric("xdsbridge_source_stale", `source="beating"`); !ok || v != 0 {
		t.Errorf("xdsbridge_source_stale{source=\"beating\"} = %v (present %v), want 0", v, ok)
	}

	eventually(t, 10*time.Second, "restarted to be restarted for staleness", func() bool {
		e := get()["restarted"]
		return e.Restarts >= 1 && e.State == "running" && e.Pid != restartedPid
	})
	if e := get()["restarted"]; !strings.Contains(e.LastError, "max_silence") {
		t.Errorf("restarted: last_error %q, want it to name max_silence", e.LastError)
	}

	// Without restart_on_stale the stuck source stays: reported, not
	// restarted.
	time.Sleep(1500 * time.Millisecond)
	if e := get()["stuck"]; e.Restarts != 0 || len(stuck.starts()) != stuckStarts || !e.Stale || e.State != "running" || e.Pid != stuckPid {
		t.Errorf("stuck without restart_on_stale: %+v, %d starts (%d before); want stale, running as pid %d, never restarted",
			e, len(stuck.starts()), stuckStarts, stuckPid)
	}
	eventually(t, 10*time.Second, "beating, once it stops reporting, to be stale too", func() bool { return get()["beating"].Stale })
}
