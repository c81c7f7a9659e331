package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xdsbridge/xdsbridge/sdk"
)

var testPlugin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "host-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testPlugin = filepath.Join(dir, "testplugin")
	out, err := exec.Command("go", "build", "-o", testPlugin, "./testdata/testplugin").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build testplugin: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreCurrent()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// recorder is a Sink that keeps every update.
type recorder struct {
	mu      sync.Mutex
	updates []sdk.Update
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) Apply(_ string, u sdk.Update) {
	r.mu.Lock()
	r.updates = append(r.updates, u)
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until cond holds over the updates so far.
func (r *recorder) waitFor(t *testing.T, within time.Duration, what string, cond func([]sdk.Update) bool) {
	t.Helper()
	deadline := time.After(within)
	for {
		r.mu.Lock()
		ok := cond(r.updates)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
	}
}

func fulls(us []sdk.Update) int {
	n := 0
	for _, u := range us {
		if u.Full {
			n++
		}
	}
	return n
}

func testSpec(name, config string) Plugin {
	return Plugin{
		Spec:           Spec{Name: name, Command: []string{testPlugin}, Config: []byte(config), Env: PluginEnv()},
		InitialBackoff: 50 * time.Millisecond,
		MaxBackoff:     400 * time.Millisecond,
	}
}

func runHost(t *testing.T, opts Options, plugins ...Plugin) (*Host, *recorder, func()) {
	t.Helper()
	rec := newRecorder()
	var logs bytes.Buffer
	var mu sync.Mutex
	opts.Sink = rec
	opts.Logger = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := New(opts, plugins)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = h.Run(ctx); close(done) }()
	stop := func() {
		cancel()
		<-done
		if t.Failed() {
			mu.Lock()
			t.Logf("host log:\n%s", logs.String())
			mu.Unlock()
		}
	}
	t.Cleanup(stop)
	return h, rec, stop
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestLargeFullState: a full state bigger than one message crosses the
// process boundary split and arrives whole, as one update.
func TestLargeFullState(t *testing.T) {
	_, rec, _ := runHost(t, Options{}, testSpec("big", "clusters: 100\nendpoints: 1000\n"))
	rec.waitFor(t, 60*time.Second, "the full state", func(us []sdk.Update) bool { return fulls(us) == 1 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	u := rec.updates[0]
	n := 0
	for _, c := range u.Clusters {
		n += len(c.Endpoints)
	}
	if len(u.Clusters) != 100 || n != 100_000 {
		t.Fatalf("got %d clusters and %d endpoints, want 100 and 100000", len(u.Clusters), n)
	}
	if e := u.Clusters[7].Endpoints[3]; e.Health != sdk.Healthy || e.Locality.Region != "r1" || e.Metadata["gen"] != float64(0) {
		t.Fatalf("endpoint lost attributes: %+v", e)
	}
}

// TestRestartAfterCrash: a plugin that dies is restarted with backoff, the
// sink is told it is down, and the restarted plugin's full state arrives.
func TestRestartAfterCrash(t *testing.T) {
	h, rec, _ := runHost(t, Options{}, testSpec("crashy", "mode: exit_after_first\n"))
	rec.waitFor(t, 30*time.Second, "three full states", func(us []sdk.Update) bool { return fulls(us) >= 3 })
	rec.mu.Lock()
	var down int
	for _, u := range rec.updates {
		if u.Status != nil && u.Status.State == sdk.Disconnected && strings.Contains(u.Status.Reason, "plugin not running") {
			down++
		}
	}
	rec.mu.Unlock()
	if down < 2 {
		t.Fatalf("the sink was told of %d outages, want at least 2", down)
	}
	st := h.Statuses()[0]
	if st.Restarts < 2 || st.LastError == "" {
		t.Fatalf("status %+v: want restarts ≥ 2 and a last error", st)
	}
}

// TestHungPluginIsReplaced: a plugin that stops answering (SIGSTOP) is
// killed within PingInterval+PingTimeout and restarted.
func TestHungPluginIsReplaced(t *testing.T) {
	h, rec, _ := runHost(t, Options{PingInterval: 200 * time.Millisecond, PingTimeout: 300 * time.Millisecond},
		testSpec("hangs", "mode: stop_after_first\n"))
	rec.waitFor(t, 30*time.Second, "a restart after the hang", func(us []sdk.Update) bool { return fulls(us) >= 2 })
	st := h.Statuses()[0]
	if !strings.Contains(st.LastError, "health check") {
		t.Fatalf("last error %q does not name the health check", st.LastError)
	}
}

// TestChangeSets: change sets after the full state arrive in order.
func TestChangeSets(t *testing.T) {
	_, rec, _ := runHost(t, Options{}, testSpec("ticks", "clusters: 3\nendpoints: 2\ntick: 20ms\n"))
	rec.waitFor(t, 30*time.Second, "five change sets", func(us []sdk.Update) bool { return len(us) >= 6 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !rec.updates[0].Full {
		t.Fatalf("first update is not a full state")
	}
	prev := -1.0
	for _, u := range rec.updates[1:] {
		if u.Full || len(u.Clusters) != 1 {
			t.Fatalf("unexpected update %+v", u)
		}
		gen := u.Clusters[0].Endpoints[0].Metadata["gen"].(float64)
		if gen <= prev {
			t.Fatalf("change sets out of order: %v after %v", gen, prev)
		}
		prev = gen
	}
}

func TestConfigureErrors(t *testing.T) {
	ctx := t.Context()
	c, err := Start(ctx, Spec{Name: "bad", Command: []string{testPlugin}, Config: []byte("mode: dance\nclustres: 2\n")}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Kill()
	if c.Info().GetName() != "testplugin" || c.Info().GetVersion() != "1.2.3" {
		t.Fatalf("info %v", c.Info())
	}
	errs, err := c.Configure(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range errs {
		got[e.Path] = e.Message
	}
	if !strings.Contains(got["clustres"], `did you mean "clusters"`) || len(errs) != 1 {
		// Decoding stops at unknown keys before Validate runs; one error.
		t.Fatalf("field errors %+v", errs)
	}
}

func TestChecksum(t *testing.T) {
	data, err := os.ReadFile(testPlugin)
	if err != nil {
		t.Fatal(err)
	}
	good := sha256.Sum256(data)
	bad := good
	bad[0] ^= 0xff
	ctx := t.Context()
	logger := slog.New(slog.DiscardHandler)

	c, err := Start(ctx, Spec{Name: "ok", Command: []string{testPlugin}, SHA256: good[:]}, logger)
	if err != nil {
		t.Fatalf("matching checksum refused: %v", err)
	}
	c.Kill()
	_, err = Start(ctx, Spec{Name: "tampered", Command: []string{testPlugin}, SHA256: bad[:]}, logger)
	if err == nil || !strings.Contains(err.Error(), "does not match its configured sha256") {
		t.Fatalf("tampered binary: err = %v", err)
	}
}

// A plugin that dies before the handshake is reported with what it printed.
func TestStartFailureKeepsOutput(t *testing.T) {
	script := filepath.Join(t.TempDir(), "dies")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho 'cannot open registry: permission denied' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Start(t.Context(), Spec{Name: "dies", Command: []string{script}, Env: PluginEnv()}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "cannot open registry: permission denied") {
		t.Fatalf("err = %v, want the plugin's last output", err)
	}
}
