package bench

import (
	"fmt"
	"math"
)

// targets checks the targets against the figures. A miss is a
// finding to explain, not a failure of the run.
func (r *runner) targets() {
	res := r.res
	p := r.opts.Profile
	add := func(name, want, measured string, met, scaled bool) {
		res.Targets = append(res.Targets, Target{Name: name, Want: want, Measured: measured, Met: met, Scaled: scaled})
	}
	v := func(system, key string) (float64, bool) { return res.value(system, key) }

	full := fmt.Sprintf("full push %d×%d → %d SotW", p.FullPush.Clusters, p.FullPush.Endpoints, last(p.FullPush.Clients))
	fullScaled := p.FullPush.Clusters != 100 || p.FullPush.Endpoints != 100 || last(p.FullPush.Clients) < 500
	if a, ok := v("xdsbridge", "fullpush.last_ms"); ok {
		if f, ok := v("floor", "fullpush.last_ms"); ok {
			add(full+" vs floor", "≤ 1.2× floor", fmt.Sprintf("%.2f× (%.1f vs %.1f ms)", a/f, a, f), a/f <= 1.2, fullScaled)
		}
		if l, ok := v("linear", "fullpush.last_ms"); ok {
			add(full+" vs LinearCache", "faster than LinearCache", fmt.Sprintf("%.2f× (%.1f vs %.1f ms)", a/l, a, l), a < l, fullScaled)
		}
		if sn, ok := v("snapshot", "fullpush.last_ms"); ok {
			add(full+" vs SnapshotCache", "≥ 5× faster", fmt.Sprintf("%.1f× faster (%.1f vs %.1f ms)", sn/a, a, sn), sn/a >= 5, fullScaled)
		}
	}

	one := fmt.Sprintf("1 of %d changed, %d SotW subscribed to all", p.OneOfMany.Clusters, p.OneOfMany.Clients)
	oneScaled := p.OneOfMany.Clusters < 1000 || p.OneOfMany.Clients < 500
	if a, ok := v("xdsbridge", "oneofmany.last_ms"); ok {
		add(one+": last client has it", "≤ 20 ms", fmt.Sprintf("%.2f ms", a), a <= 20, oneScaled)
		if l, ok := v("linear", "oneofmany.last_ms"); ok {
			add(one+" vs LinearCache", "≥ 30× faster", fmt.Sprintf("%.1f× faster (%.2f vs %.1f ms)", l/a, a, l), l/a >= 30, oneScaled)
		}
		if f, ok := v("floor", "oneofmany.last_ms"); ok {
			add(one+": last client vs floor", "≤ 1.2× floor", fmt.Sprintf("%.2f× (%.2f vs %.2f ms)", a/f, a, f), a/f <= 1.2, oneScaled)
		}
	}
	if a, ok := v("xdsbridge", "oneofmany.cpu_ms"); ok {
		if f, ok := v("floor", "oneofmany.cpu_ms"); ok {
			add(one+": CPU vs floor", "≤ 1.5× floor", fmt.Sprintf("%.2f× (%.1f vs %.1f ms)", a/f, a, f), a/f <= 1.5, oneScaled)
		}
	}
	if shared, ok := v("xdsbridge", "oneofmany.cpu_ms"); ok {
		if solo, ok := v("xdsbridge", "oneofmany.solo_cpu_ms"); ok && shared > 0 {
			add("cost of a change follows its subscribers, not all subscriptions",
				fmt.Sprintf("CPU(1 subscriber) ≤ 0.1× CPU(%d subscribers)", p.OneOfMany.Clients),
				fmt.Sprintf("%.3f× (%.2f vs %.2f ms)", solo/shared, solo, shared), solo/shared <= 0.1, oneScaled)
		}
	}

	if slope, ok := r.slope("xdsbridge"); ok {
		if floor, ok := r.slope("floor"); ok && floor > 0 {
			add("CPU per update independent of clients except the write",
				"added CPU per client ≤ 1.2× the floor's (the write)",
				fmt.Sprintf("%.2f× (%.1f vs %.1f µs per client per push)", slope/floor, slope, floor), slope/floor <= 1.2, fullScaled)
		}
	}
	for _, key := range []string{"fullpush.heap_kb", "oneofmany.heap_kb", "fleet.heap_kb"} {
		if h, ok := v("xdsbridge", key); ok {
			add(res.figure(key, "", "").Label, "≤ 100 KB", fmt.Sprintf("%.1f KB", h), h <= 100, false)
		}
	}
	for _, key := range []string{"oneofmany.rss_kb", "fleet.rss_kb"} {
		if h, ok := v("xdsbridge", key); ok {
			add(res.figure(key, "", "").Label, "≤ 150 KB", fmt.Sprintf("%.1f KB", h), h <= 150, false)
		}
	}

	c := p.Churn
	churnScaled := c.Clusters < 10000 || c.Clients < 1000 || c.FlapsPerSecond < 100 || c.Duration.Seconds() < 60
	if p99, ok := v("xdsbridge", "churn.flap_p99_ms"); ok {
		und, _ := v("xdsbridge", "churn.undelivered")
		add(fmt.Sprintf("%d×%d, %d clients, %g flaps/s for %v: p99 source → client", c.Clusters, c.Endpoints, c.Clients, c.FlapsPerSecond, c.Duration),
			"≤ 100 ms, all delivered (REST pollers included)", fmt.Sprintf("%.1f ms, %.0f undelivered", p99, und), p99 <= 100 && und == 0, churnScaled)
		if l, ok := v("linear", "churn.flap_p99_ms"); ok {
			add(fmt.Sprintf("churn %d×%d, %d clients: p99 streaming client vs LinearCache", c.Clusters, c.Endpoints, c.Clients),
				"≤ LinearCache's", fmt.Sprintf("%.2f× (%.1f vs %.1f ms)", p99/l, p99, l), p99 <= l, false)
		}
	}
	fl := p.Fleet
	if p99, ok := v("xdsbridge", "fleet.p99_ms"); ok {
		measured := fmt.Sprintf("%.1f ms", p99)
		if f, ok := v("floor", "fleet.p99_ms"); ok {
			measured += fmt.Sprintf(" (floor %.1f ms)", f)
		}
		add(fmt.Sprintf("fleet, %d SotW clients on own connections: 1 of %d changed, p99 client", fl.Clients, fl.Clusters),
			"≤ 250 ms at 5,000 clients", measured, p99 <= 250, fl.Clients < 5000)
	}
	if n, ok := v("xdsbridge", "nacks"); ok {
		add("NACKs, every scenario", "0", fmt.Sprintf("%.0f", n), n == 0, false)
	}
	if d, ok := v("xdsbridge", "ipc.aggregator_ms"); ok {
		add(fmt.Sprintf("plugin IPC: full state of %d endpoints", p.IPC.Clusters*p.IPC.Endpoints), "≤ 300 ms",
			fmt.Sprintf("%.1f ms", d), d <= 300, p.IPC.Clusters*p.IPC.Endpoints < 100_000)
	}
}

// slope is a system's added CPU per client per full push, in µs, from the
// smallest to the largest number of clients of the sweep.
func (r *runner) slope(system string) (float64, bool) {
	var lo, hi *SweepPoint
	for i := range r.res.Sweep {
		pt := &r.res.Sweep[i]
		if pt.System != system {
			continue
		}
		if lo == nil || pt.Clients < lo.Clients {
			lo = pt
		}
		if hi == nil || pt.Clients > hi.Clients {
			hi = pt
		}
	}
	if lo == nil || hi == nil || hi.Clients == lo.Clients || math.IsNaN(hi.CPUMS) || math.IsNaN(lo.CPUMS) {
		return 0, false
	}
	return (hi.CPUMS - lo.CPUMS) * 1000 / float64(hi.Clients-lo.Clients), true
}

func last(xs []int) int {
	if len(xs) == 0 {
		return 0
	}
	return xs[len(xs)-1]
}
