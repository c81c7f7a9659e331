package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// Sink receives every complete update from every plugin, in order per
// plugin. The host also sends status-only updates of its own when a plugin
// stops or restarts. Apply must not block for long.
type Sink interface {
	Apply(source string, u sdk.Update)
}

// Plugin is one plugin instance to supervise.
type Plugin struct {
	Spec
	// InitialBackoff and MaxBackoff bound the wait before a restart; the
	// wait doubles after each failure, with ±20% jitter, and goes back to
	// InitialBackoff once the plugin has run for MaxBackoff.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// RestartOnStale restarts the plugin, as after a crash, when its source
	// stays silent for longer than the max_silence it declared. Otherwise a
	// stale source is only reported (Status.Stale).
	RestartOnStale bool
}

// Options configure a Host.
type Options struct {
	Logger *slog.Logger
	Sink   Sink
	// PingInterval is how often a running plugin is health-checked, and
	// PingTimeout how long it has to answer before it is killed and
	// restarted. A hung plugin is thus replaced within
	// PingInterval+PingTimeout.
	PingInterval time.Duration // default 5s
	PingTimeout  time.Duration // default 5s
}

// Host runs the configured plugins and restarts them when they fail.
type Host struct {
	opts    Options
	plugins []Plugin

	mu     sync.Mutex
	status map[string]*Status
}

// Status is a plugin's state as the host sees it.
type Status struct {
	Name     string    `json:"name"`
	Plugin   string    `json:"plugin,omitempty"`
	Version  string    `json:"version,omitempty"`
	State    string    `json:"state"` // starting | running | backoff | stopped
	Pid      int       `json:"pid,omitempty"`
	Restarts int       `json:"restarts"`
	Since    time.Time `json:"since"`
	// LastError is why the plugin last stopped or failed to start.
	LastError string `json:"last_error,omitempty"`
	// LastUpdate is when the plugin last sent data.
	LastUpdate time.Time `json:"last_update,omitzero"`
	// Source is the state the plugin reports for its registry.
	Source       string `json:"source_state"`
	SourceReason string `json:"source_reason,omitempty"`
	// MaxSilence is how long the running source said it may go without
	// sending anything; 0 means forever (it is never stale).
	MaxSilence time.Duration `json:"max_silence,omitempty"`
	// LastProgress is when the running source last sent anything: data,
	// a status, or a status repeated to show it is alive.
	LastProgress time.Time `json:"last_progress,omitzero"`
	// Stale is set while the running source has been silent for longer
	// than MaxSilence.
	Stale bool `json:"stale"`
}

// New returns a Host for plugins. Call Run to start them.
func New(opts Options, plugins []Plugin) *Host {
	if opts.PingInterval <= 0 {
		opts.PingInterval = 5 * time.Second
	}
	if opts.PingTimeout <= 0 {
		opts.PingTimeout = 5 * time.Second
	}
	h := &Host{opts: opts, plugins: plugins, status: map[string]*Status{}}
	for _, p := range plugins {
		h.status[p.Name] = &Status{Name: p.Name, State: "starting", Source: sdk.StateUnknown.String(), Since: time.Now()}
	}
	return h
}

// Run starts every plugin and keeps it running until ctx ends; then it stops
// them all and returns.
func (h *Host) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, p := range h.plugins {
		wg.Go(func() { h.supervise(ctx, p) })
	}
	wg.Wait()
	return nil
}

// Statuses returns every plugin's status, sorted by name.
func (h *Host) Statuses() []Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Status, 0, len(h.status))
	for _, s := range h.status {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (h *Host) update(name string, fn func(*Status)) {
	h.mu.Lock()
	fn(h.status[name])
	h.mu.Unlock()
}

func (h *Host) supervise(ctx context.Context, p Plugin) {
	logger := h.opts.Logger.With("source", p.Name)
	backoff := p.InitialBackoff
	for {
		started := time.Now()
		err := h.runOnce(ctx, p, logger)
		if ctx.Err() != nil {
			h.update(p.Name, func(s *Status) { s.State, s.Pid, s.Since, s.Stale = "stopped", 0, time.Now(), false })
			return
		}
		if time.Since(started) >= p.MaxBackoff {
			backoff = p.InitialBackoff
		}
		wait := jitter(backoff)
		logger.Error("plugin stopped; restarting", "err", err, "in", wait.Round(time.Millisecond))
		h.update(p.Name, func(s *Status) {
			s.State, s.Pid, s.Since, s.LastError = "backoff", 0, time.Now(), err.Error()
			s.Stale = false // it describes a running source; LastError says why it stopped
			s.Restarts++
		})
		h.opts.Sink.Apply(p.Name, sdk.Update{Status: &sdk.Status{
			State:  sdk.Disconnected,
			Reason: fmt.Sprintf("plugin not running (%v); serving its last state", err),
		}})
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			h.update(p.Name, func(s *Status) { s.State, s.Since = "stopped", time.Now() })
			return
		case <-t.C:
		}
		backoff = min(backoff*2, p.MaxBackoff)
	}
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// runOnce runs the plugin until it fails or ctx ends.
func (h *Host) runOnce(ctx context.Context, p Plugin, logger *slog.Logger) error {
	h.update(p.Name, func(s *Status) {
		s.State, s.Since = "starting", time.Now()
		s.MaxSilence, s.LastProgress, s.Stale = 0, time.Time{}, false
	})
	conn, err := Start(ctx, p.Spec, logger)
	if err != nil {
		return err
	}
	defer conn.Kill()
	info := conn.Info()
	h.update(p.Name, func(s *Status) { s.Plugin, s.Version, s.Pid = info.GetName(), info.GetVersion(), conn.Pid() })

	problems, err := conn.Configure(ctx, false)
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		msgs := make([]string, len(problems))
		for i, e := range problems {
			msgs[i] = e.Error()
			logger.Error("plugin rejected its configuration", "problem", e.Error())
		}
		return fmt.Errorf("configuration rejected: %s", strings.Join(msgs, "; "))
	}
	maxSilence := conn.MaxSilence()
	var progress atomic.Int64 // Unix nanoseconds of the last message
	now := time.Now()
	progress.Store(now.UnixNano())
	h.update(p.Name, func(s *Status) {
		s.State, s.Since = "running", now
		s.MaxSilence, s.LastProgress = maxSilence, now
	})
	logger.Info("plugin running", "plugin", info.GetName(), "version", info.GetVersion(), "pid", conn.Pid(), "max_silence", maxSilence)

	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel(nil)
	wg.Go(func() { h.watchdog(ctx, conn, cancel) })
	if maxSilence > 0 {
		wg.Go(func() { h.liveness(ctx, p, logger, conn, maxSilence, &progress, cancel) })
	}

	var status *sdk.Status // the last status the plugin sent in this run
	err = conn.Watch(ctx, func(u sdk.Update) {
		now := time.Now()
		progress.Store(now.UnixNano())
		data := u.Full || len(u.Clusters)+len(u.RemovedClusters)+len(u.Resources)+len(u.RemovedResources) > 0
		var wasStale bool
		h.update(p.Name, func(s *Status) {
			if data {
				s.LastUpdate = now
			}
			if u.Status != nil {
				s.Source, s.SourceReason = u.Status.State.String(), u.Status.Reason
			}
			s.LastProgress, wasStale, s.Stale = now, s.Stale, false
		})
		if wasStale {
			logger.Info("source sends again; no longer stale")
		}
		if !data && (u.Status == nil || (status != nil && *u.Status == *status)) {
			return // a heartbeat: progress, and nothing for the aggregator
		}
		if u.Status != nil {
			st := *u.Status
			status = &st
		}
		h.opts.Sink.Apply(p.Name, u)
	})
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	if err == nil && ctx.Err() == nil {
		err = errors.New("watch ended")
	}
	return err
}

// errHung is the cause given when a plugin stops answering health checks.
var errHung = errors.New("plugin did not answer its health check; killed it")

// watchdog kills a plugin that stops answering pings.
func (h *Host) watchdog(ctx context.Context, conn *Conn, cancel context.CancelCauseFunc) {
	tick := time.NewTicker(h.opts.PingInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		done := make(chan error, 1)
		go func() { done <- conn.Ping() }()
		t := time.NewTimer(h.opts.PingTimeout)
		select {
		case <-ctx.Done():
			t.Stop()
			conn.Kill()
			<-done
			return
		case err := <-done:
			t.Stop()
			if err != nil {
				cancel(fmt.Errorf("plugin health check failed: %w", err))
				conn.Kill()
				return
			}
		case <-t.C:
			cancel(errHung)
			conn.Kill()
			<-done
			return
		}
	}
}

// errStale is the cause given when a source outstays its max_silence and
// its plugin is restarted for it.
var errStale = errors.New("source stale")

// liveness marks the source stale once it has sent nothing for longer than
// maxSilence, and with RestartOnStale ends the run so that the plugin is
// restarted. It catches what the health check cannot: a process that
// answers pings while its source's Run is stuck.
func (h *Host) liveness(ctx context.Context, p Plugin, logger *slog.Logger, conn *Conn, maxSilence time.Duration, progress *atomic.Int64, cancel context.CancelCauseFunc) {
	tick := time.NewTicker(max(maxSilence/10, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		silent := time.Since(time.Unix(0, progress.Load()))
		if silent <= maxSilence {
			continue
		}
		var was bool
		h.update(p.Name, func(s *Status) { was, s.Stale = s.Stale, true })
		if !p.RestartOnStale {
			if !was {
				logger.Warn("source is stale: its plugin runs but has sent nothing for longer than it promised; set restart_on_stale to restart it",
					"silent", silent.Round(time.Millisecond), "max_silence", maxSilence)
			}
			continue
		}
		cancel(fmt.Errorf("%w: sent nothing for %v, over its max_silence %v; restarting it (restart_on_stale)",
			errStale, silent.Round(time.Millisecond), maxSilence))
		conn.Kill()
		return
	}
}

// PluginEnv is the environment a plugin process gets: only what a Go program
// needs to find its tools, certificates and time zone.
func PluginEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "TZ", "LANG", "SSL_CERT_FILE", "SSL_CERT_DIR", "GOCOVERDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}
