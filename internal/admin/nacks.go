package admin

import (
	"cmp"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const (
	// nackWindow is how far back the status page counts NACKs.
	nackWindow = time.Hour
	// nackSampleEvery is how often the NACK counter is sampled: the window
	// is exact to within it.
	nackSampleEvery = time.Minute
	// nackSamples bounds the samples kept: one window of them and the
	// baseline before it.
	nackSamples = int(nackWindow/nackSampleEvery) + 1

	nacksMetric       = "xdsbridge_xds_nacks_total"
	processStartGauge = "process_start_time_seconds"
)

// nackKey is one series of xdsbridge_xds_nacks_total: the type rejected and
// a source whose resources the rejected response carried ("" for none).
type nackKey struct{ Type, Source string }

type nackSample struct {
	at     time.Time
	counts map[nackKey]float64
}

// nackHistory remembers samples of xdsbridge_xds_nacks_total, which the xDS
// server increments for every NACK, so that the NACKs of the last hour are
// the counter now less the counter an hour ago. It holds at most
// nackSamples samples.
type nackHistory struct {
	mu      sync.Mutex
	samples []nackSample // oldest first
}

// add records a sample and forgets those no longer needed as a baseline.
func (h *nackHistory) add(s nackSample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.samples = append(h.samples, s)
	start := s.at.Add(-nackWindow)
	// Keep the newest sample at or before the window's start.
	for len(h.samples) > 1 && !h.samples[1].at.After(start) {
		h.samples = h.samples[1:]
	}
	if len(h.samples) > nackSamples {
		h.samples = h.samples[len(h.samples)-nackSamples:]
	}
	h.samples = slices.Clip(h.samples)
}

// within returns, per series, the NACKs counted in the window that ends
// with now: now's counts less the newest sample at or before the window's
// start, or now's counts when no sample is that old (the counter started
// at zero with the process, which is younger than the window, or samples
// are not taken). Series without NACKs in the window are left out.
func (h *nackHistory) within(now nackSample) map[nackKey]float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var base map[nackKey]float64
	start := now.at.Add(-nackWindow)
	for _, s := range h.samples {
		if s.at.After(start) {
			break
		}
		base = s.counts
	}
	out := map[nackKey]float64{}
	for k, v := range now.counts {
		if d := v - base[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// nackCount is the NACKs of one series in the window, for the page.
type nackCount struct {
	Type, Source string
	Count        float64
}

// sortedNACKs orders counts by type, then source.
func sortedNACKs(counts map[nackKey]float64) []nackCount {
	keys := slices.SortedFunc(maps.Keys(counts), func(a, b nackKey) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Source, b.Source))
	})
	out := make([]nackCount, len(keys))
	for i, k := range keys {
		out[i] = nackCount{Type: k.Type, Source: k.Source, Count: counts[k]}
	}
	return out
}

// gathered is what the status page reads from the metrics registry.
type gathered struct {
	nacks map[nackKey]float64
	// started is process_start_time_seconds; zero without it.
	started time.Time
}

func gather(g prometheus.Gatherer) (gathered, error) {
	out := gathered{nacks: map[nackKey]float64{}}
	if g == nil {
		return out, nil
	}
	mfs, err := g.Gather()
	for _, mf := range mfs {
		switch mf.GetName() {
		case nacksMetric:
			for _, m := range mf.GetMetric() {
				out.nacks[nackKey{Type: label(m, "type"), Source: label(m, "source")}] = m.GetCounter().GetValue()
			}
		case processStartGauge:
			if ms := mf.GetMetric(); len(ms) == 1 {
				sec := ms[0].GetGauge().GetValue()
				out.started = time.Unix(0, int64(sec*1e9))
			}
		}
	}
	return out, err
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
