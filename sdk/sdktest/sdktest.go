package sdktest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdsbridge/xdsbridge/internal/host"
	"github.com/xdsbridge/xdsbridge/sdk"
)

// Options say how to run the plugin under test.
type Options struct {
	// Command is the plugin binary and its arguments, as plugins.yaml's
	// `command` gives them. Required. Build sets one up.
	Command []string
	// Config is the plugin's `config` block, as YAML.
	Config string
	// BaseDir is the directory relative paths in Config resolve against
	// (plugins.yaml's directory in production). Default: t.TempDir().
	BaseDir string
	// Instance is the plugin's instance name. Default: "sdktest".
	Instance string
	// Timeout bounds each step: Info, each Configure, and, in Conformance,
	// the wait for the first full state; it is also the wait of Next,
	// NextData and NextStatus when they are given 0. Default: 30s. (The
	// go-plugin handshake has a bound of its own, one minute.)
	Timeout time.Duration
	// Logger receives the host's and the plugin's logs (what the plugin
	// writes with ConfigureRequest.Logger). Default: t.Log at level Info
	// and above, shown when a test fails or runs with -v.
	Logger *slog.Logger
}

// DefaultTimeout is Options.Timeout's default.
const DefaultTimeout = 30 * time.Second

// maxQueued bounds the updates a Plugin holds that the test has not read
// yet. A plugin that sends more has a bug (or the test stopped reading).
const maxQueued = 1024

// withDefaults fills in the defaults, using t for the directory.
func (o Options) withDefaults(t testing.TB) Options {
	if o.BaseDir == "" {
		o.BaseDir = t.TempDir()
	}
	if o.Instance == "" {
		o.Instance = "sdktest"
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return o
}

// Plugin is a plugin process started through the same host protocol
// xdsbridge uses. Its methods other than Kill are meant for one test
// goroutine at a time.
type Plugin struct {
	opts Options
	conn *host.Conn
	logs *testWriter

	// ctx ends the watch; cancel is called by Kill.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	watching bool          // the watch goroutine was started
	killed   bool          // Kill was called
	done     chan struct{} // closed when the watch goroutine returns
	watchErr error         // why the watch ended; read after done
	updates  chan sdk.Update
	killOnce sync.Once

	// What the test has read so far, as the host would hold it.
	seenFull bool
	clusters map[string]sdk.Cluster
	status   sdk.Status
}

// Start launches the plugin in opts.Command through the host protocol (the
// go-plugin handshake with AutoMTLS, Info, Configure), checks that Info is
// sane, and hands the plugin opts.Config. The test fails at once if the
// plugin does not start or rejects its configuration. The plugin is killed
// when the test ends.
func Start(t testing.TB, opts Options) *Plugin {
	t.Helper()
	p := launch(t, opts)
	ctx, cancel := context.WithTimeout(t.Context(), p.opts.Timeout)
	defer cancel()
	problems, err := p.conn.Configure(ctx, false)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	if len(problems) > 0 {
		t.Fatalf("sdktest: the plugin rejected its configuration:\n%s", formatFieldErrors(problems))
	}
	return p
}

// ConfigureErrors launches the plugin as `xdsbridge validate` does and hands
// it opts.Config with ValidateOnly set. It returns the field errors the
// plugin reports; none means the configuration is valid. The plugin is
// killed before ConfigureErrors returns.
func ConfigureErrors(t testing.TB, opts Options) []sdk.FieldError {
	t.Helper()
	p := launch(t, opts)
	defer p.Kill()
	ctx, cancel := context.WithTimeout(t.Context(), p.opts.Timeout)
	defer cancel()
	problems, err := p.conn.Configure(ctx, true)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	return problems
}

// launch starts the plugin process and checks its Info. It does not
// configure the plugin.
func launch(t testing.TB, opts Options) *Plugin {
	t.Helper()
	opts = opts.withDefaults(t)
	if len(opts.Command) == 0 || opts.Command[0] == "" {
		t.Fatalf("sdktest: Options.Command is empty: set it to the plugin binary and its arguments")
	}
	logs := &testWriter{t: t}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{
			Level: slog.LevelInfo,
			ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
				if len(groups) == 0 && a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			},
		}))
	}

	ctx, cancel := context.WithTimeout(t.Context(), opts.Timeout)
	defer cancel()
	conn, err := host.Start(ctx, host.Spec{
		Name:    opts.Instance,
		Command: slices.Clone(opts.Command),
		Env:     host.PluginEnv(),
		Config:  []byte(opts.Config),
		BaseDir: opts.BaseDir,
	}, logger)
	if err != nil {
		logs.close()
		t.Fatalf("sdktest: %v", err)
	}

	wctx, wcancel := context.WithCancel(t.Context())
	p := &Plugin{
		opts:     opts,
		conn:     conn,
		logs:     logs,
		ctx:      wctx,
		cancel:   wcancel,
		done:     make(chan struct{}),
		updates:  make(chan sdk.Update, maxQueued),
		clusters: map[string]sdk.Cluster{},
	}
	t.Cleanup(p.Kill)
	if err := checkInfo(p.Info()); err != nil {
		t.Errorf("sdktest: %v", err)
	}
	return p
}

// checkInfo reports what is wrong with a plugin's Info. host.Start has
// already checked the API version.
func checkInfo(name, version string) error {
	var errs []error
	if name == "" {
		errs = append(errs, errors.New("info: the plugin has an empty name (set sdk.Plugin.Name)"))
	}
	if version == "" {
		errs = append(errs, errors.New("info: the plugin has an empty version (set sdk.Plugin.Version)"))
	}
	return errors.Join(errs...)
}

// MaxSilence is the liveness promise the plugin's source made when it was
// configured (sdk.Liveness); 0 when it made none.
func (p *Plugin) MaxSilence() time.Duration { return p.conn.MaxSilence() }

// Info returns the name and version the plugin reported.
func (p *Plugin) Info() (name, version string) {
	info := p.conn.Info()
	return info.GetName(), info.GetVersion()
}

// Next returns the plugin's next complete update, waiting at most within
// (Options.Timeout when within is 0). The first call opens the Watch stream.
// Every update is checked as xdsbridge's aggregator checks it (see
// CheckUpdate), and a change set before the first full state is an error;
// problems are reported with t.Errorf. The test fails at once if nothing
// arrives in time or the stream ends.
func (p *Plugin) Next(t testing.TB, within time.Duration) sdk.Update {
	t.Helper()
	within = p.within(within)
	u := p.next(t, within, within)
	p.apply(t, u)
	return u
}

// NextData returns the next update that carries data (a full state or a
// change set), skipping status-only updates. within bounds the whole wait.
func (p *Plugin) NextData(t testing.TB, within time.Duration) sdk.Update {
	t.Helper()
	within = p.within(within)
	deadline := time.Now().Add(within)
	for {
		u := p.next(t, time.Until(deadline), within)
		p.apply(t, u)
		if hasData(u) {
			return u
		}
	}
}

// NextStatus returns the next status the plugin reports, skipping updates
// without one. within bounds the whole wait.
func (p *Plugin) NextStatus(t testing.TB, within time.Duration) sdk.Status {
	t.Helper()
	within = p.within(within)
	deadline := time.Now().Add(within)
	for {
		u := p.next(t, time.Until(deadline), within)
		p.apply(t, u)
		if u.Status != nil {
			return *u.Status
		}
	}
}

// Quiet fails the test if the plugin sends any update within d.
func (p *Plugin) Quiet(t testing.TB, d time.Duration) {
	t.Helper()
	p.startWatch(t)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case u := <-p.updates:
		p.apply(t, u)
		t.Errorf("sdktest: expected no update for %s, got %s", d, Describe(u))
	case <-p.done:
		t.Fatalf("sdktest: %v", p.endErr())
	case <-timer.C:
	}
}

// Clusters returns the clusters the host would hold after the updates the
// test has read so far, sorted by name.
func (p *Plugin) Clusters() []sdk.Cluster {
	out := slices.Collect(maps.Values(p.clusters))
	slices.SortFunc(out, func(a, b sdk.Cluster) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Status returns the last status among the updates the test has read.
func (p *Plugin) Status() sdk.Status { return p.status }

// Kill stops the watch and the plugin process, and waits for both. It is
// safe to call more than once; Start arranges for it when the test ends.
func (p *Plugin) Kill() {
	p.killOnce.Do(func() {
		p.mu.Lock()
		p.killed = true
		watching := p.watching
		p.mu.Unlock()
		p.cancel()
		if watching {
			<-p.done
		}
		p.conn.Kill()
		p.logs.close()
	})
}

func (p *Plugin) within(d time.Duration) time.Duration {
	if d <= 0 {
		return p.opts.Timeout
	}
	return d
}

// startWatch opens the Watch stream once, in a goroutine Kill waits for.
func (p *Plugin) startWatch(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.killed {
		t.Fatalf("sdktest: the plugin was killed")
	}
	if p.watching {
		return
	}
	p.watching = true
	go func() {
		defer close(p.done)
		err := p.conn.Watch(p.ctx, func(u sdk.Update) {
			select {
			case p.updates <- u:
			default:
				p.mu.Lock()
				p.watchErr = fmt.Errorf("the plugin sent more than %d updates the test did not read", maxQueued)
				p.mu.Unlock()
				p.cancel()
			}
		})
		p.mu.Lock()
		if p.watchErr == nil {
			p.watchErr = err
		}
		p.mu.Unlock()
	}()
}

// next returns the next queued update, failing the test when none comes
// within (which may be zero or less: then only what is queued counts) or
// the stream has ended and nothing is left. total is the wait the caller
// was given, for the message.
func (p *Plugin) next(t testing.TB, within, total time.Duration) sdk.Update {
	t.Helper()
	p.startWatch(t)
	select {
	case u := <-p.updates:
		return u
	default:
	}
	timer := time.NewTimer(max(within, 0))
	defer timer.Stop()
	select {
	case u := <-p.updates:
		return u
	case <-p.done:
		select {
		case u := <-p.updates: // sent before the stream ended
			return u
		default:
		}
		t.Fatalf("sdktest: %v", p.endErr())
	case <-timer.C:
		t.Fatalf("sdktest: no update from the plugin within %s", total)
	}
	panic("unreachable")
}

// endErr says why the watch ended. Call it after done is closed.
func (p *Plugin) endErr() error {
	p.mu.Lock()
	err, killed := p.watchErr, p.killed
	p.mu.Unlock()
	switch {
	case killed:
		return errors.New("the plugin was killed")
	case err == nil:
		return errors.New("the watch stream ended")
	case p.conn.Exited():
		return fmt.Errorf("the plugin process exited; the watch stream failed: %w", err)
	default:
		return fmt.Errorf("the watch stream failed: %w", err)
	}
}

// apply checks u, reports its problems to t, and applies it to the state
// the test sees.
func (p *Plugin) apply(t testing.TB, u sdk.Update) {
	t.Helper()
	if err := CheckUpdate(u); err != nil {
		t.Errorf("sdktest: the plugin sent a bad update (%s):\n%v", Describe(u), err)
	}
	if hasData(u) && !u.Full && !p.seenFull {
		t.Errorf("sdktest: the plugin sent a change set (%s) before its first full state", Describe(u))
	}
	if u.Full {
		p.seenFull = true
		clear(p.clusters)
	}
	for _, name := range u.RemovedClusters {
		if !u.Full {
			delete(p.clusters, name)
		}
	}
	for _, c := range u.Clusters {
		p.clusters[c.Name] = c
	}
	if u.Status != nil {
		p.status = *u.Status
	}
}

// hasData reports whether u carries data: a full state or a change.
func hasData(u sdk.Update) bool {
	return u.Full || len(u.Clusters)+len(u.RemovedClusters)+len(u.Resources)+len(u.RemovedResources) > 0
}

// Describe summarizes an update in one line, for test messages: its kind,
// cluster names, removals and status.
func Describe(u sdk.Update) string {
	var parts []string
	switch {
	case u.Full:
		parts = append(parts, "full")
	case hasData(u):
		parts = append(parts, "change set")
	default:
		parts = append(parts, "status only")
	}
	if len(u.Clusters) > 0 {
		names := make([]string, len(u.Clusters))
		for i, c := range u.Clusters {
			names[i] = fmt.Sprintf("%s(%d)", c.Name, len(c.Endpoints))
		}
		parts = append(parts, "clusters "+strings.Join(names, " "))
	}
	if len(u.RemovedClusters) > 0 {
		parts = append(parts, "removed "+strings.Join(u.RemovedClusters, " "))
	}
	if n := len(u.Resources); n > 0 {
		parts = append(parts, fmt.Sprintf("%d resources", n))
	}
	if n := len(u.RemovedResources); n > 0 {
		parts = append(parts, fmt.Sprintf("%d removed resources", n))
	}
	if s := u.Status; s != nil {
		st := "status " + s.State.String()
		if s.Reason != "" {
			st += fmt.Sprintf(" (%s)", s.Reason)
		}
		parts = append(parts, st)
	}
	return strings.Join(parts, ", ")
}

func formatFieldErrors(errs []sdk.FieldError) string {
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = "\t" + e.Error()
	}
	return strings.Join(lines, "\n")
}

// BuildTimeout bounds Build.
const BuildTimeout = 5 * time.Minute

// Build compiles the main package pkg (as `go build` takes it, relative to
// the test's package directory: "." or "./cmd/myplugin") into t.TempDir()
// and returns the binary's path, ready for Options.Command. It needs the go
// command in PATH, as `go test` provides.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("sdktest: build %s: the go command is not in PATH: %v", pkg, err)
	}
	out := filepath.Join(t.TempDir(), "plugin")
	if runtime.GOOS == "windows" {
		out += ".exe"
	}
	ctx, cancel := context.WithTimeout(t.Context(), BuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", out, pkg)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sdktest: go build %s: %v\n%s", pkg, err, msg)
	}
	return out
}

// testWriter sends each write (one log line) to t.Log until closed.
type testWriter struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log("plugin log: " + strings.TrimSuffix(string(b), "\n"))
	}
	return len(b), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}
