package bench

import (
	"context"
	"fmt"
	"slices"

	"github.com/xdsbridge/xdsbridge/bench/fleet"
	"github.com/xdsbridge/xdsbridge/bench/workload"
)

// fleetScenario connects SotW clients, each on its own connection as
// separate Envoys are, subscribed to every cluster; it measures how long
// they take to sync, the control plane's heap and RSS per client once they
// are idle, and then one cluster changed at a time: when the last client
// has it, and the p99 over every client and change.
func (r *runner) fleetScenario(ctx context.Context, name string) error {
	spec := r.opts.Profile.Fleet
	if spec.Clients == 0 {
		return nil
	}
	if name == "snapshot" && spec.SkipSnapshot {
		r.note("snapshot: fleet: skipped in the %s profile (--fleet-snapshot runs it): SnapshotCache resends its whole snapshot to every client on each change, seconds per change at 1,000 clients, which would add minutes to the run for what the other scenarios show", r.opts.Profile.Name)
		return nil
	}
	// The clients' process raises its own limit when they connect.
	if err := fleet.RaiseFDLimit(spec.Clients + fleet.FDSlack); err != nil {
		return err
	}
	init := workload.Op{Kind: workload.Init, Seq: 1, Endpoints: int32(spec.Endpoints), Clusters: workload.Regulars(0, int32(spec.Clusters))}
	s, err := r.open(ctx, name, init, fleet.Options{ShareMilli: 1000, MaxClusters: spec.Clusters})
	if err != nil {
		return err
	}
	defer s.close("fleet")
	s.quiesce(ctx)
	served := readMemory()
	before, err := r.opts.Pool.Counters()
	if err != nil {
		return err
	}
	syncMS, err := s.connect(ctx, kindsOf(fleet.SotW, spec.Clients))
	if err != nil {
		return err
	}
	s.quiesce(ctx)
	mem := readMemory()
	r.heapProfile("fleet", name)
	after, err := r.opts.Pool.Counters()
	if err != nil {
		return err
	}
	if dials := after.Dials - before.Dials; dials < int64(spec.Clients) {
		r.note("%s: fleet: %d clients opened %d connections; each should have its own", name, spec.Clients, dials)
	}
	what := fmt.Sprintf("fleet: %d SotW clients on their own connections, %d×%d", spec.Clients, spec.Clusters, spec.Endpoints)
	r.res.set(name, "fleet.sync_ms", what+": all synced", "ms", syncMS)
	r.res.set(name, "fleet.heap_kb", what+": heap per idle client", "KB", perClientKB(mem.heap, served.heap, spec.Clients))
	r.res.set(name, "fleet.rss_kb", what+": RSS per idle client", "KB", perClientKB(mem.rss, served.rss, spec.Clients))
	r.progress("%-9s %s: all synced in %.0f ms, heap %.1f KB and RSS %.1f KB per client", name, what,
		syncMS, perClientKB(mem.heap, served.heap, spec.Clients), perClientKB(mem.rss, served.rss, spec.Clients))

	var lasts, cpus, all []float64
	for k := range spec.Changes {
		seq := s.next()
		ref := workload.Regular(int32((k*389 + 17) % spec.Clusters))
		op := workload.Op{Kind: workload.Flap, Seq: seq, Clusters: []workload.Ref{ref}, Endpoint: int32(1 + k%max(spec.Endpoints-1, 1))}
		out, err := s.change(ctx, []workload.Op{op}, []fleet.Event{{Seq: seq, Clusters: []workload.Ref{ref}}}, 0, nil)
		if err != nil {
			return err
		}
		sum := out.summary()
		if !out.complete {
			r.note("%s: fleet change %d: not every client had it within %v (%d of %d by the time it was reported)", name, k+1, r.opts.Profile.Timeout, sum.got, sum.expected)
		}
		lasts = append(lasts, percentile(sum.last, 100))
		cpus = append(cpus, ms(out.cpu))
		all = append(all, sum.stream...)
		r.progress("%-9s fleet: 1 of %d changed → %d clients #%d: last client %.1f ms, p99 %.1f ms, CPU %.1f ms",
			name, spec.Clusters, spec.Clients, k+1, lasts[k], percentile(sum.stream, 99), cpus[k])
	}
	slices.Sort(all)
	one := fmt.Sprintf("fleet: 1 of %d clusters changed → %d SotW clients", spec.Clusters, spec.Clients)
	r.res.set(name, "fleet.last_ms", one+": last client has it", "ms", median(lasts))
	r.res.set(name, "fleet.p50_ms", one+": p50 client, over every change", "ms", percentile(all, 50))
	r.res.set(name, "fleet.p99_ms", one+": p99 client, over every change", "ms", percentile(all, 99))
	r.res.set(name, "fleet.cpu_ms", one+": CPU per change", "ms", median(cpus))
	return nil
}
