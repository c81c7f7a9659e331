// Package bench measures xdsbridge against go-control-plane's caches and a
// floor, on the same workload, in one process, one after the other.
//
// The systems (see package systems) are (1) xdsbridge fed through its
// plugin protocol by a synthetic source plugin, (2) go-control-plane's
// SnapshotCache with one shared snapshot rebuilt per change, (3) its
// LinearCache behind a MuxCache, and (4) a floor that marshals each
// resource once and writes the same bytes to every stream. Synthetic
// clients (package fleet) run in a process of their own so that their CPU
// and memory are not counted as the control plane's; latencies are from
// the moment the driver makes a change at the source to the moment a
// client has read the response carrying it.
//
// CPU is this process's getrusage delta around each change, until the
// work it set off has died down, plus the plugin process's CPU for (1).
// Heap is the live heap after a collection; RSS is VmRSS.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/bench/fleet"
	"github.com/xdsbridge/xdsbridge/bench/systems"
	"github.com/xdsbridge/xdsbridge/bench/workload"
)

// Options configure a run.
type Options struct {
	Profile Profile
	// Systems to run, in table order; empty means SystemNames().
	Systems []string
	// PluginCommand runs the synthetic source plugin for xdsbridge.
	PluginCommand []string
	// Pool runs the clients.
	Pool   fleet.Pool
	Logger *slog.Logger
	// Progress, if set, gets a line per step.
	Progress io.Writer
	// Scenarios to run; empty means ScenarioNames().
	Scenarios []string
	// NoRateLimit turns off xdsbridge's default request rate limits.
	NoRateLimit bool
	// ProfileDir, if set, gets a CPU profile of each scenario run against
	// each system (cpu-SCENARIO-SYSTEM.pprof) and a heap profile with its
	// clients connected and idle (heap-SCENARIO-SYSTEM.pprof).
	ProfileDir string
}

// ScenarioNames are the scenarios, in the order they run.
func ScenarioNames() []string { return []string{"fullpush", "oneofmany", "churn", "fleet", "ipc"} }

// SystemNames are the systems, in table order: (1) to (4).
func SystemNames() []string { return []string{"xdsbridge", "snapshot", "linear", "floor"} }

type runner struct {
	opts   Options
	res    *Results
	logger *slog.Logger
}

// Run runs every scenario of the profile against every system.
func Run(ctx context.Context, opts Options) (*Results, error) {
	if opts.Pool == nil {
		return nil, errors.New("bench: no client pool")
	}
	if len(opts.Systems) == 0 {
		opts.Systems = SystemNames()
	}
	for _, s := range opts.Systems {
		if !slices.Contains(SystemNames(), s) {
			return nil, fmt.Errorf("bench: unknown system %q (want %v)", s, SystemNames())
		}
	}
	if len(opts.Scenarios) == 0 {
		opts.Scenarios = ScenarioNames()
	}
	for _, s := range opts.Scenarios {
		if !slices.Contains(ScenarioNames(), s) {
			return nil, fmt.Errorf("bench: unknown scenario %q (want %v)", s, ScenarioNames())
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &runner{opts: opts, logger: opts.Logger, res: &Results{
		Profile: opts.Profile.Name,
		Started: time.Now().UTC(),
		Host:    Host{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH},
		Systems: opts.Systems,
	}}
	start := time.Now()
	scenarios := []struct {
		name string
		fn   func(context.Context, string) error
	}{
		{"fullpush", r.fullPush},
		{"oneofmany", r.oneOfMany},
		{"churn", r.churn},
		{"fleet", r.fleetScenario},
	}
	for _, sc := range scenarios {
		if !slices.Contains(opts.Scenarios, sc.name) {
			continue
		}
		for _, name := range opts.Systems {
			if err := ctx.Err(); err != nil {
				return r.res, err
			}
			stop := r.cpuProfile(sc.name, name)
			err := sc.fn(ctx, name)
			stop()
			if err != nil {
				r.note("%s: %s: %v", name, sc.name, err)
			}
		}
	}
	if slices.Contains(opts.Systems, "xdsbridge") && slices.Contains(opts.Scenarios, "ipc") {
		stop := r.cpuProfile("ipc", "xdsbridge")
		err := r.ipc(ctx)
		stop()
		if err != nil {
			r.note("xdsbridge: plugin IPC: %v", err)
		}
	}
	r.targets()
	r.res.Duration = time.Since(start)
	return r.res, nil
}

// cpuProfile starts a CPU profile of scenario against system, if asked
// for, and returns what stops it.
func (r *runner) cpuProfile(scenario, system string) (stop func()) {
	if r.opts.ProfileDir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(r.opts.ProfileDir, "cpu-"+scenario+"-"+system+".pprof"))
	if err != nil {
		r.note("profile: %v", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		r.note("profile: %v", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// heapProfile writes a heap profile, if asked for.
func (r *runner) heapProfile(scenario, system string) {
	if r.opts.ProfileDir == "" {
		return
	}
	f, err := os.Create(filepath.Join(r.opts.ProfileDir, "heap-"+scenario+"-"+system+".pprof"))
	if err != nil {
		r.note("profile: %v", err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		r.note("profile: %v", err)
	}
}

func (r *runner) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.res.Notes = append(r.res.Notes, msg)
	r.progress("note: %s", msg)
}

func (r *runner) progress(format string, args ...any) {
	if r.opts.Progress != nil {
		fmt.Fprintf(r.opts.Progress, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
}

func (r *runner) newSystem(name string) systems.System {
	logger := r.logger.With("system", name)
	switch name {
	case "xdsbridge":
		return &systems.Bridge{PluginCommand: r.opts.PluginCommand, Logger: logger, NoRateLimit: r.opts.NoRateLimit}
	case "snapshot":
		return &systems.Snapshot{Logger: logger}
	case "linear":
		return &systems.Linear{Logger: logger}
	}
	return &systems.Floor{Logger: logger}
}

// session is one system serving one scenario's workload to one fleet.
type session struct {
	r      *runner
	sys    systems.System
	m      *workload.Model
	target fleet.Target
	seq    uint32
	// counters at the start, for the scenario's totals.
	start fleet.Counters
	// built and stored record, for xdsbridge, when each marker left the
	// aggregator and when it reached the store.
	built, stored *storeClock
}

// storeClock records when the aggregator's changes reach the store, by
// the markers they carry: it splits xdsbridge's latency into the way in
// (plugin, host, aggregator, translator, store) and the way out (server,
// clients).
type storeClock struct {
	mu sync.Mutex
	at map[uint32]int64
}

func (c *storeClock) record(ch *aggregator.Change) {
	now := time.Now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cl := range ch.Clusters {
		for _, e := range cl.Endpoints {
			if e.Hostname != "" {
				workload.FindMarkers([]byte(e.Hostname), func(seq uint32, _ int32) {
					if _, ok := c.at[seq]; !ok {
						c.at[seq] = now
					}
				})
			}
		}
	}
}

// latencies returns, sorted, how long after its start each change reached
// the store.
func (c *storeClock) latencies(starts map[uint32]int64) []float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []float64
	for seq, start := range starts {
		if at, ok := c.at[seq]; ok {
			out = append(out, ms(time.Duration(at-start)))
		}
	}
	slices.Sort(out)
	return out
}

// open starts sys on the clusters init creates and resets the fleet.
func (r *runner) open(ctx context.Context, name string, init workload.Op, fo fleet.Options) (*session, error) {
	if err := r.opts.Pool.Reset(fo); err != nil {
		return nil, err
	}
	s := &session{r: r, sys: r.newSystem(name), m: &workload.Model{}, seq: init.Seq}
	if b, ok := s.sys.(*systems.Bridge); ok {
		s.built = &storeClock{at: map[uint32]int64{}}
		s.stored = &storeClock{at: map[uint32]int64{}}
		b.OnBuild = s.built.record
		b.OnPublish = s.stored.record
	}
	s.m.Apply(init)
	target, err := s.sys.Start(ctx, s.m, init)
	if err != nil {
		return nil, err
	}
	s.target = target
	s.start, _ = r.opts.Pool.Counters()
	return s, nil
}

// close stops the clients (by resetting the fleet) and the system, and
// records the scenario's NACKs and stream errors.
func (s *session) close(scenario string) {
	c, err := s.r.opts.Pool.Counters()
	if err == nil {
		name := s.sys.Name()
		s.r.addNACKs(name, c.NACKs-s.start.NACKs)
		if e := c.StreamErrors - s.start.StreamErrors; e > 0 {
			var msgs []string
			for msg, n := range c.Errors {
				msgs = append(msgs, fmt.Sprintf("%d× %q", n, msg))
			}
			slices.Sort(msgs)
			s.r.note("%s: %s: %d client stream errors (the fleet's first kinds, over its life: %s)", name, scenario, e, strings.Join(msgs, "; "))
		}
	}
	if b, ok := s.sys.(*systems.Bridge); ok {
		if n := b.Counter("rate_limit"); n > 0 {
			s.r.note("xdsbridge: %s: %.0f requests delayed by the default rate limits", scenario, n)
		}
	}
	_ = s.r.opts.Pool.Reset(fleet.Options{})
	if err := s.sys.Stop(); err != nil {
		s.r.note("%s: stop: %v", s.sys.Name(), err)
	}
	runtime.GC()
}

func (r *runner) addNACKs(system string, n int64) {
	v, _ := r.res.value(system, "nacks")
	r.res.set(system, "nacks", "NACKs, all scenarios", "count", v+float64(n))
}

// connect starts clients of kinds and waits until they are synced. It
// returns how long the last streaming client took, in ms (NaN if one did
// not sync).
func (s *session) connect(ctx context.Context, kinds []fleet.Kind) (float64, error) {
	pool := s.r.opts.Pool
	t0 := time.Now()
	first, err := pool.Connect(s.target, kinds, s.m.Refs())
	if err != nil {
		return math.NaN(), err
	}
	rep, err := pool.WaitSynced(ctx, first, first+int32(len(kinds)), s.r.opts.Profile.Timeout)
	if err != nil {
		return math.NaN(), err
	}
	last := 0.0
	unsynced := 0
	for i, at := range rep.At {
		if at == 0 {
			unsynced++
			continue
		}
		if rep.Kinds[i] != fleet.REST {
			last = max(last, ms(time.Duration(at-t0.UnixNano())))
		}
	}
	if unsynced > 0 {
		s.r.note("%s: %d of %d clients not synced within %v", s.sys.Name(), unsynced, len(kinds), s.r.opts.Profile.Timeout)
		return math.NaN(), nil
	}
	return last, nil
}

// outcome is what one or more changes measured.
type outcome struct {
	starts   map[uint32]int64
	reports  []fleet.EventReport
	cpu      time.Duration
	bytes    int64
	complete bool
	// applied is how many of the changes were made.
	applied int
}

// change makes ops, announced as evs, paced at rate per second (0: at
// once), and measures them until every client has them and the work they
// set off has died down.
func (s *session) change(ctx context.Context, ops []workload.Op, evs []fleet.Event, rate float64, during func()) (*outcome, error) {
	pool := s.r.opts.Pool
	if err := pool.Announce(evs); err != nil {
		return nil, err
	}
	c0, err := pool.Counters()
	if err != nil {
		return nil, err
	}
	out := &outcome{starts: make(map[uint32]int64, len(ops))}
	cpu0 := cpuTime() + s.sys.ChildCPU()
	begin := time.Now()
	// A system that cannot take changes at the rate gets the rest of them
	// skipped once it is lagGrace behind the schedule.
	const lagGrace = 5 * time.Second
	end := begin.Add(time.Duration(float64(len(ops)) / max(rate, 1e-9) * float64(time.Second)))
	for i, op := range ops {
		if rate > 0 && time.Since(end) > lagGrace {
			s.r.note("%s: %d of %d changes skipped: the system fell more than %v behind %g/s", s.sys.Name(), len(ops)-i, len(ops), lagGrace, rate)
			break
		}
		if rate > 0 {
			due := begin.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil, ctx.Err()
				case <-t.C:
				}
			}
		}
		out.starts[op.Seq] = time.Now().UnixNano()
		changed, removed := s.m.Apply(op)
		if err := s.sys.Apply(ctx, op, s.m, changed, removed); err != nil {
			return nil, err
		}
	}
	if during != nil {
		during()
	}
	var seqs []uint32
	for _, ev := range evs {
		if _, ok := out.starts[ev.Seq]; ok {
			seqs = append(seqs, ev.Seq)
		}
	}
	out.applied = len(seqs)
	out.complete, err = pool.Wait(ctx, seqs, s.r.opts.Profile.Timeout)
	if err != nil {
		return nil, err
	}
	s.quiesce(ctx)
	out.cpu = cpuTime() + s.sys.ChildCPU() - cpu0
	c1, err := pool.Counters()
	if err != nil {
		return nil, err
	}
	out.bytes = c1.BytesRead - c0.BytesRead
	out.reports, err = pool.Report(seqs)
	return out, err
}

// quiesce waits for the control plane, its plugin and the clients to go
// quiet.
func (s *session) quiesce(ctx context.Context) {
	pool := s.r.opts.Pool.PID()
	quiesce(ctx, func() time.Duration {
		d := cpuTime() + s.sys.ChildCPU()
		if pool != os.Getpid() {
			c, _ := systems.ProcessCPU(pool)
			d += c
		}
		return d
	}, 10*time.Second)
}

// next returns the next marker number.
func (s *session) next() uint32 {
	s.seq++
	return s.seq
}

// summary is an outcome's latencies, in ms.
type summary struct {
	// stream and rest are every receipt's latency, sorted.
	stream, rest []float64
	// last is, per complete event, when its last streaming client had it;
	// lastREST the same for REST clients.
	last, lastREST []float64
	expected, got  int
}

func (o *outcome) summary() summary {
	var s summary
	for _, rep := range o.reports {
		start, ok := o.starts[rep.Seq]
		if !ok {
			continue
		}
		s.expected += rep.Expected
		s.got += len(rep.Receipts)
		last, lastREST := math.NaN(), math.NaN()
		for _, rc := range rep.Receipts {
			l := ms(time.Duration(rc.At - start))
			if rc.Kind == fleet.REST {
				s.rest = append(s.rest, l)
				lastREST = maxNaN(lastREST, l)
			} else {
				s.stream = append(s.stream, l)
				last = maxNaN(last, l)
			}
		}
		if len(rep.Receipts) == rep.Expected {
			if !math.IsNaN(last) {
				s.last = append(s.last, last)
			}
			if !math.IsNaN(lastREST) {
				s.lastREST = append(s.lastREST, lastREST)
			}
		}
	}
	slices.Sort(s.stream)
	slices.Sort(s.rest)
	slices.Sort(s.last)
	slices.Sort(s.lastREST)
	return s
}

func maxNaN(a, b float64) float64 {
	if math.IsNaN(a) {
		return b
	}
	return max(a, b)
}

func kindsOf(k fleet.Kind, n int) []fleet.Kind {
	out := make([]fleet.Kind, n)
	for i := range out {
		out[i] = k
	}
	return out
}

// fullPush measures a change of every endpoint of every cluster, pushed to
// SotW clients subscribed to everything, at each number of clients.
func (r *runner) fullPush(ctx context.Context, name string) error {
	spec := r.opts.Profile.FullPush
	init := workload.Op{Kind: workload.Init, Seq: 1, Endpoints: int32(spec.Endpoints), Clusters: workload.Regulars(0, int32(spec.Clusters))}
	s, err := r.open(ctx, name, init, fleet.Options{ShareMilli: 1000, MaxClusters: spec.Clusters})
	if err != nil {
		return err
	}
	defer s.close("full push")
	s.quiesce(ctx)
	served := readMemory()
	connected := 0
	for i, n := range spec.Clients {
		syncMS, err := s.connect(ctx, kindsOf(fleet.SotW, n-connected))
		if err != nil {
			return err
		}
		connected = n
		s.quiesce(ctx)
		mem := readMemory()
		if i == len(spec.Clients)-1 {
			r.heapProfile("fullpush", name)
		}
		if i == 0 {
			r.res.set(name, "fullpush.sync_ms", fmt.Sprintf("full push: initial sync, %d SotW clients × %d clusters", n, spec.Clusters), "ms", syncMS)
		}
		var lasts, ins, p50s, p99s, cpus, mbs []float64
		for k := range spec.Pushes {
			seq := s.next()
			op := workload.Op{Kind: workload.Push, Seq: seq}
			out, err := s.change(ctx, []workload.Op{op}, []fleet.Event{{Seq: seq, Clusters: s.m.Refs()}}, 0, nil)
			if err != nil {
				return err
			}
			sum := out.summary()
			if !out.complete {
				r.note("%s: full push %d to %d clients: not every client had it within %v (%d of %d by the time it was reported)", name, k+1, n, r.opts.Profile.Timeout, sum.got, sum.expected)
			}
			lasts = append(lasts, percentile(sum.last, 100))
			if s.stored != nil {
				ins = append(ins, percentile(s.stored.latencies(out.starts), 100))
			}
			p50s = append(p50s, percentile(sum.stream, 50))
			p99s = append(p99s, percentile(sum.stream, 99))
			cpus = append(cpus, ms(out.cpu))
			mbs = append(mbs, float64(out.bytes)/1e6)
			r.progress("%-9s full push %d×%d → %4d SotW #%d: last client %.1f ms, CPU %.1f ms, %.1f MB",
				name, spec.Clusters, spec.Endpoints, n, k+1, lasts[len(lasts)-1], cpus[len(cpus)-1], mbs[len(mbs)-1])
		}
		pt := SweepPoint{System: name, Clients: n, LastMS: median(lasts), P99MS: median(p99s), CPUMS: median(cpus), MBytes: median(mbs)}
		r.res.Sweep = append(r.res.Sweep, pt)
		if i == len(spec.Clients)-1 {
			label := fmt.Sprintf("full push %d×%d → %d SotW", spec.Clusters, spec.Endpoints, n)
			r.res.set(name, "fullpush.last_ms", label+": last client has it", "ms", pt.LastMS)
			if len(ins) > 0 {
				r.res.set(name, "fullpush.store_ms", label+": source → store (xdsbridge's way in)", "ms", median(ins))
			}
			r.res.set(name, "fullpush.p50_ms", label+": p50 client", "ms", median(p50s))
			r.res.set(name, "fullpush.p99_ms", label+": p99 client", "ms", pt.P99MS)
			r.res.set(name, "fullpush.cpu_ms", label+": CPU per push", "ms", pt.CPUMS)
			r.res.set(name, "fullpush.mb", label+": bytes written per push", "MB", pt.MBytes)
			r.res.set(name, "fullpush.heap_kb", fmt.Sprintf("full push: heap per idle client (%d clusters)", spec.Clusters), "KB", perClientKB(mem.heap, served.heap, n))
			r.res.set(name, "fullpush.rss_kb", fmt.Sprintf("full push: RSS per idle client (%d clusters)", spec.Clusters), "KB", perClientKB(mem.rss, served.rss, n))
		}
	}
	return nil
}

func perClientKB(now, before uint64, n int) float64 {
	return (float64(now) - float64(before)) / 1024 / float64(n)
}

// oneOfMany measures a change of one cluster among many, all of which
// every client subscribes to; then of solo clusters, each with a single
// subscriber.
func (r *runner) oneOfMany(ctx context.Context, name string) error {
	spec := r.opts.Profile.OneOfMany
	refs := workload.Regulars(0, int32(spec.Clusters))
	for i := range spec.Solo {
		refs = append(refs, workload.Ref{Index: int32(spec.Clusters + i), Owner: int32(i)})
	}
	init := workload.Op{Kind: workload.Init, Seq: 1, Endpoints: int32(spec.Endpoints), Clusters: refs}
	s, err := r.open(ctx, name, init, fleet.Options{ShareMilli: 1000, MaxClusters: len(refs)})
	if err != nil {
		return err
	}
	defer s.close("one of many")
	s.quiesce(ctx)
	served := readMemory()
	syncMS, err := s.connect(ctx, kindsOf(fleet.SotW, spec.Clients))
	if err != nil {
		return err
	}
	s.quiesce(ctx)
	mem := readMemory()
	r.heapProfile("oneofmany", name)
	label := fmt.Sprintf("1 of %d clusters changed, %d SotW subscribed to all", spec.Clusters, spec.Clients)
	r.res.set(name, "oneofmany.sync_ms", fmt.Sprintf("initial sync, %d SotW clients × %d clusters", spec.Clients, len(refs)), "ms", syncMS)
	r.res.set(name, "oneofmany.heap_kb", fmt.Sprintf("heap per idle client (%d clusters subscribed)", len(refs)), "KB", perClientKB(mem.heap, served.heap, spec.Clients))
	r.res.set(name, "oneofmany.rss_kb", fmt.Sprintf("RSS per idle client (%d clusters subscribed)", len(refs)), "KB", perClientKB(mem.rss, served.rss, spec.Clients))

	var ins []float64
	measure := func(what string, pick func(k int) workload.Ref) (last, p99, cpu float64, err error) {
		var lasts, p99s, cpus []float64
		for k := range spec.Changes {
			seq := s.next()
			ref := pick(k)
			op := workload.Op{Kind: workload.Flap, Seq: seq, Clusters: []workload.Ref{ref}, Endpoint: int32(1 + k%max(spec.Endpoints-1, 1))}
			out, err := s.change(ctx, []workload.Op{op}, []fleet.Event{{Seq: seq, Clusters: []workload.Ref{ref}}}, 0, nil)
			if err != nil {
				return 0, 0, 0, err
			}
			sum := out.summary()
			if !out.complete {
				r.note("%s: %s change %d: not every client had it within %v (%d of %d by the time it was reported)", name, what, k+1, r.opts.Profile.Timeout, sum.got, sum.expected)
			}
			lasts = append(lasts, percentile(sum.last, 100))
			p99s = append(p99s, percentile(sum.stream, 99))
			cpus = append(cpus, ms(out.cpu))
			if s.stored != nil {
				ins = append(ins, percentile(s.stored.latencies(out.starts), 100))
			}
			r.progress("%-9s %s #%d: last client %.2f ms, CPU %.2f ms", name, what, k+1, lasts[len(lasts)-1], cpus[len(cpus)-1])
		}
		return median(lasts), median(p99s), median(cpus), nil
	}
	last, p99, cpu, err := measure(fmt.Sprintf("1 of %d (%d subscribers)", spec.Clusters, spec.Clients), func(k int) workload.Ref {
		return workload.Regular(int32((k*389 + 17) % spec.Clusters))
	})
	if err != nil {
		return err
	}
	r.res.set(name, "oneofmany.last_ms", label+": last client has it", "ms", last)
	if len(ins) > 0 {
		r.res.set(name, "oneofmany.store_ms", label+": source → store (xdsbridge's way in)", "ms", median(ins))
	}
	r.res.set(name, "oneofmany.p99_ms", label+": p99 client", "ms", p99)
	r.res.set(name, "oneofmany.cpu_ms", label+": CPU per change", "ms", cpu)
	if spec.Solo == 0 {
		return nil
	}
	last, _, cpu, err = measure("solo cluster (1 subscriber)", func(k int) workload.Ref {
		i := k % spec.Solo
		return workload.Ref{Index: int32(spec.Clusters + i), Owner: int32(i)}
	})
	if err != nil {
		return err
	}
	r.res.set(name, "oneofmany.solo_last_ms", "same clients, a cluster with 1 subscriber changed: last client has it", "ms", last)
	r.res.set(name, "oneofmany.solo_cpu_ms", "same clients, a cluster with 1 subscriber changed: CPU per change", "ms", cpu)
	return nil
}

// churn runs a mixed fleet through sustained flaps and reconnects, a
// rollout burst, and clusters added and removed.
func (r *runner) churn(ctx context.Context, name string) error {
	spec := r.opts.Profile.Churn
	init := workload.Op{Kind: workload.Init, Seq: 1, Endpoints: int32(spec.Endpoints), Clusters: workload.Regulars(0, int32(spec.Clusters))}
	s, err := r.open(ctx, name, init, fleet.Options{ShareMilli: spec.ShareMilli, MaxClusters: spec.Clusters + spec.AddRemove, RESTInterval: spec.RESTInterval})
	if err != nil {
		return err
	}
	defer s.close("churn")
	kinds := mix(spec.Clients, spec.Mix)
	if s.target.REST == "" {
		kinds = slices.DeleteFunc(kinds, func(k fleet.Kind) bool { return k == fleet.REST })
	}
	s.quiesce(ctx)
	served := readMemory()
	syncMS, err := s.connect(ctx, kinds)
	if err != nil {
		return err
	}
	s.quiesce(ctx)
	mem := readMemory()
	r.heapProfile("churn", name)
	share := float64(spec.ShareMilli) / 10
	label := fmt.Sprintf("churn %d×%d, %d clients (%g%% of clusters each)", spec.Clusters, spec.Endpoints, spec.Clients, share)
	r.res.set(name, "churn.sync_ms", label+": initial sync, streaming clients", "ms", syncMS)
	r.res.set(name, "churn.heap_kb", label+": heap per idle client", "KB", perClientKB(mem.heap, served.heap, len(kinds)))

	// Sustained flaps, with reconnects. Clusters are flapped in a shuffled
	// order, none twice, so that no change hides another.
	rng := rand.New(rand.NewPCG(7, 11))
	order := rng.Perm(spec.Clusters)
	n := int(spec.FlapsPerSecond * spec.Duration.Seconds())
	ops := make([]workload.Op, n)
	evs := make([]fleet.Event, n)
	for i := range ops {
		ref := workload.Regular(int32(order[i%len(order)]))
		seq := s.next()
		ops[i] = workload.Op{Kind: workload.Flap, Seq: seq, Clusters: []workload.Ref{ref}, Endpoint: int32(1 + rng.IntN(max(spec.Endpoints-1, 1)))}
		evs[i] = fleet.Event{Seq: seq, Clusters: ops[i].Clusters}
	}
	pool := r.opts.Pool
	if err := pool.Churn(spec.ReconnectPercent); err != nil {
		return err
	}
	begin := time.Now()
	out, err := s.change(ctx, ops, evs, spec.FlapsPerSecond, func() {
		_ = pool.Churn(0)
	})
	if err != nil {
		_ = pool.Churn(0)
		return err
	}
	elapsed := time.Since(begin)
	sum := out.summary()
	flaps := fmt.Sprintf("churn: %g flaps/s for %v, %g%%/s reconnecting", spec.FlapsPerSecond, spec.Duration, spec.ReconnectPercent)
	r.res.set(name, "churn.flap_p50_ms", flaps+": p50 streaming client", "ms", percentile(sum.stream, 50))
	r.res.set(name, "churn.flap_p99_ms", flaps+": p99 streaming client", "ms", percentile(sum.stream, 99))
	r.res.set(name, "churn.flap_max_ms", flaps+": max streaming client", "ms", percentile(sum.stream, 100))
	r.res.set(name, "churn.flap_last_p99_ms", flaps+": last client has it, p99 over flaps", "ms", percentile(sum.last, 99))
	if s.target.REST != "" {
		r.res.set(name, "churn.flap_rest_p99_ms", fmt.Sprintf("%s: p99 REST client (polls every %v)", flaps, spec.RESTInterval), "ms", percentile(sum.rest, 99))
	}
	if s.stored != nil {
		in, agg := s.stored.latencies(out.starts), s.built.latencies(out.starts)
		r.res.set(name, "churn.flap_store_p99_ms", flaps+": p99 source → store (xdsbridge's way in)", "ms", percentile(in, 99))
		r.progress("%-9s %s: source → aggregator p50 %.1f ms, p99 %.1f ms; → store p50 %.1f ms, p99 %.1f ms",
			name, flaps, percentile(agg, 50), percentile(agg, 99), percentile(in, 50), percentile(in, 99))
	}
	r.res.set(name, "churn.flap_cpu_ms", flaps+": CPU per flap", "ms", ms(out.cpu)/float64(max(out.applied, 1)))
	r.res.set(name, "churn.flap_mbps", flaps+": bytes written", "MB/s", float64(out.bytes)/1e6/elapsed.Seconds())
	r.res.set(name, "churn.undelivered", flaps+": changes not delivered", "count", float64(sum.expected-sum.got))
	r.progress("%-9s %s: p50 %.1f ms, p99 %.1f ms, max %.1f ms, CPU/flap %.2f ms, %d/%d delivered",
		name, flaps, percentile(sum.stream, 50), percentile(sum.stream, 99), percentile(sum.stream, 100), ms(out.cpu)/float64(max(out.applied, 1)), sum.got, sum.expected)

	// A rollout burst, then clusters added, then removed.
	burst := func(key, what string, op workload.Op, ev fleet.Event) error {
		out, err := s.change(ctx, []workload.Op{op}, []fleet.Event{ev}, 0, nil)
		if err != nil {
			return err
		}
		sum := out.summary()
		if !out.complete {
			r.note("%s: %s: not every client had it within %v (%d of %d by the time it was reported)", name, what, r.opts.Profile.Timeout, sum.got, sum.expected)
		}
		r.res.set(name, "churn."+key+"_last_ms", "churn: "+what+": last streaming client has it", "ms", percentile(sum.last, 100))
		r.res.set(name, "churn."+key+"_cpu_ms", "churn: "+what+": CPU", "ms", ms(out.cpu))
		r.progress("%-9s %s: last client %.1f ms, CPU %.1f ms", name, what, percentile(sum.last, 100), ms(out.cpu))
		return nil
	}
	var rolled []workload.Ref
	for _, i := range rng.Perm(spec.Clusters)[:min(spec.Rollout, spec.Clusters)] {
		rolled = append(rolled, workload.Regular(int32(i)))
	}
	seq := s.next()
	if err := burst("rollout", fmt.Sprintf("rollout, half the endpoints of %d clusters replaced", len(rolled)),
		workload.Op{Kind: workload.Rollout, Seq: seq, Clusters: rolled}, fleet.Event{Seq: seq, Clusters: rolled}); err != nil {
		return err
	}
	added := workload.Regulars(int32(spec.Clusters), int32(spec.Clusters+spec.AddRemove))
	seq = s.next()
	if err := burst("add", fmt.Sprintf("%d clusters added", len(added)),
		workload.Op{Kind: workload.Add, Seq: seq, Endpoints: int32(spec.Endpoints), Clusters: added}, fleet.Event{Seq: seq, Clusters: added}); err != nil {
		return err
	}
	removed := workload.Regulars(0, int32(spec.AddRemove))
	seq = s.next()
	return burst("remove", fmt.Sprintf("%d clusters removed", len(removed)),
		workload.Op{Kind: workload.Remove, Seq: seq, Clusters: removed}, fleet.Event{Seq: seq, Clusters: removed, Removal: true})
}

// mix returns n client kinds in the proportions of pct (SotW, delta,
// REST), interleaved.
func mix(n int, pct [3]int) []fleet.Kind {
	kinds := []fleet.Kind{fleet.SotW, fleet.Delta, fleet.REST}
	total := pct[0] + pct[1] + pct[2]
	out := make([]fleet.Kind, 0, n)
	var acc [3]int
	for i := range n {
		// Give client i to the kind furthest behind its share.
		best, bestGap := 0, math.Inf(-1)
		for k := range kinds {
			gap := float64(pct[k])/float64(total)*float64(i+1) - float64(acc[k])
			if gap > bestGap {
				best, bestGap = k, gap
			}
		}
		acc[best]++
		out = append(out, kinds[best])
	}
	return out
}

// ipc measures a full state from the plugin to the aggregator: the time
// from the driver's command to the plugin until the aggregator hands the
// merged change to the publisher, and until it is in the store.
func (r *runner) ipc(ctx context.Context) error {
	spec := r.opts.Profile.IPC
	built := make(chan time.Time, 4)
	published := make(chan time.Time, 4)
	b := &systems.Bridge{
		PluginCommand: r.opts.PluginCommand,
		Logger:        r.logger.With("system", "xdsbridge"),
		OnBuild:       func(*aggregator.Change) { signal(built) },
		OnPublish:     func(*aggregator.Change) { signal(published) },
	}
	m := &workload.Model{}
	init := workload.Op{Kind: workload.Init, Seq: 1, Endpoints: int32(spec.Endpoints), Clusters: workload.Regulars(0, int32(spec.Clusters))}
	m.Apply(init)
	if _, err := b.Start(ctx, m, init); err != nil {
		return err
	}
	defer b.Stop()
	wait := func(ch chan time.Time) (time.Time, error) {
		select {
		case t := <-ch:
			return t, nil
		case <-time.After(r.opts.Profile.Timeout):
			return time.Time{}, errors.New("no build within the timeout")
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
	if _, err := wait(built); err != nil {
		return err
	}
	if _, err := wait(published); err != nil {
		return err
	}
	var toAgg, toStore, cpus []float64
	for k := range spec.Repeats {
		busy := func() time.Duration { return cpuTime() + b.ChildCPU() }
		quiesce(ctx, busy, 5*time.Second)
		op := workload.Op{Kind: workload.Full, Seq: uint32(k + 2)}
		m.Apply(op)
		cpu0 := cpuTime() + b.ChildCPU()
		t0 := time.Now()
		if err := b.Apply(ctx, op, m, nil, nil); err != nil {
			return err
		}
		t1, err := wait(built)
		if err != nil {
			return err
		}
		t2, err := wait(published)
		if err != nil {
			return err
		}
		quiesce(ctx, busy, 5*time.Second)
		toAgg = append(toAgg, ms(t1.Sub(t0)))
		toStore = append(toStore, ms(t2.Sub(t0)))
		cpus = append(cpus, ms(cpuTime()+b.ChildCPU()-cpu0))
		r.progress("xdsbridge plugin IPC #%d: full state of %d endpoints: aggregator %.1f ms, store %.1f ms, CPU %.1f ms",
			k+1, spec.Clusters*spec.Endpoints, toAgg[k], toStore[k], cpus[k])
	}
	label := fmt.Sprintf("plugin IPC: full state of %d endpoints", spec.Clusters*spec.Endpoints)
	r.res.set("xdsbridge", "ipc.aggregator_ms", label+", plugin → aggregator", "ms", median(toAgg))
	r.res.set("xdsbridge", "ipc.store_ms", label+", plugin → store", "ms", median(toStore))
	r.res.set("xdsbridge", "ipc.cpu_ms", label+": CPU (both processes)", "ms", median(cpus))
	return nil
}

func signal(ch chan time.Time) {
	select {
	case ch <- time.Now():
	default:
	}
}
