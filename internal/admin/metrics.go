package admin

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/internal/host"
	"github.com/xdsbridge/xdsbridge/sdk"
)

// SourceCollector exports the plugin host's and the aggregator's state as
// metrics, read at scrape time from host.Host.Statuses and the
// aggregator's SourceStatuses, Rejected and Ready.
type SourceCollector struct {
	host *host.Host
	agg  *aggregator.Aggregator
}

// NewSourceCollector returns a collector over h and agg.
func NewSourceCollector(h *host.Host, agg *aggregator.Aggregator) *SourceCollector {
	return &SourceCollector{host: h, agg: agg}
}

var (
	connectedDesc = prometheus.NewDesc("xdsbridge_source_connected_state",
		"1 while the source's plugin runs and its source is current: it is not stale, and it reports connected, or reports nothing but has delivered its full state; 0 otherwise (the last state is being served).",
		[]string{"source"}, nil)
	restartsDesc = prometheus.NewDesc("xdsbridge_plugin_restarts_total",
		"Times the source's plugin was restarted after it crashed, hung or failed to start.",
		[]string{"source"}, nil)
	upDesc = prometheus.NewDesc("xdsbridge_plugin_up",
		"1 while the source's plugin process is running, 0 while it is starting, backing off or stopped.",
		[]string{"source"}, nil)
	lastUpdateDesc = prometheus.NewDesc("xdsbridge_source_last_update_timestamp_seconds",
		"When the source's plugin last sent data, as a Unix time; absent before it has.",
		[]string{"source"}, nil)
	staleDesc = prometheus.NewDesc("xdsbridge_source_stale",
		"1 while the source's plugin runs but its source has sent nothing for longer than the max_silence it declared (see restart_on_stale); 0 otherwise, and always for a source that declared none.",
		[]string{"source"}, nil)
	clustersDesc = prometheus.NewDesc("xdsbridge_source_clusters",
		"Clusters the source provides now.",
		[]string{"source"}, nil)
	rejectedDesc = prometheus.NewDesc("xdsbridge_aggregator_rejected_items_total",
		"Items (clusters, endpoints, resources) rejected by validation or merging, by reason.",
		[]string{"reason"}, nil)
	readyDesc = prometheus.NewDesc("xdsbridge_ready",
		"1 once every source delivered its first full state (or the ready timeout passed) and it was published, as /readyz answers 200; 0 before.",
		nil, nil)
)

// Describe implements prometheus.Collector.
func (c *SourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{connectedDesc, restartsDesc, upDesc, lastUpdateDesc, staleDesc, clustersDesc, rejectedDesc, readyDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *SourceCollector) Collect(ch chan<- prometheus.Metric) {
	ready := false
	select {
	case <-c.agg.Ready():
		ready = true
	default:
	}
	ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, boolValue(ready))
	agg := c.agg.SourceStatuses()
	for _, st := range c.host.Statuses() {
		a := agg[st.Name]
		ch <- prometheus.MustNewConstMetric(connectedDesc, prometheus.GaugeValue, boolValue(connected(st, a)), st.Name)
		ch <- prometheus.MustNewConstMetric(restartsDesc, prometheus.CounterValue, float64(st.Restarts), st.Name)
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, boolValue(st.State == "running"), st.Name)
		ch <- prometheus.MustNewConstMetric(staleDesc, prometheus.GaugeValue, boolValue(st.Stale), st.Name)
		ch <- prometheus.MustNewConstMetric(clustersDesc, prometheus.GaugeValue, float64(a.Clusters), st.Name)
		if !st.LastUpdate.IsZero() {
			ch <- prometheus.MustNewConstMetric(lastUpdateDesc, prometheus.GaugeValue, float64(st.LastUpdate.UnixNano())/1e9, st.Name)
		}
	}
	rejected := c.agg.Rejected()
	for _, r := range rejectReasons {
		if _, ok := rejected[r]; !ok {
			rejected[r] = 0
		}
	}
	for _, reason := range slices.Sorted(maps.Keys(rejected)) {
		ch <- prometheus.MustNewConstMetric(rejectedDesc, prometheus.CounterValue, float64(rejected[reason]), reason)
	}
}

// rejectReasons are the aggregator's rejection reasons, exported at 0 from
// the start so that a rate or increase over the counter sees the first
// rejection too.
var rejectReasons = []string{
	aggregator.ReasonEmptyClusterName, aggregator.ReasonBadAddress, aggregator.ReasonBadPort,
	aggregator.ReasonBadHealth, aggregator.ReasonDuplicateEndpoint, aggregator.ReasonDuplicateCluster,
	aggregator.ReasonBadOverlay, aggregator.ReasonBadResource, aggregator.ReasonConflict,
}

// connected reports whether a source is current: its plugin runs, it is not
// stale, and it says it is connected, or it says nothing but has sent its
// full state.
func connected(st host.Status, a aggregator.SourceStatus) bool {
	if st.State != "running" || st.Stale {
		return false
	}
	switch st.Source {
	case sdk.Connected.String():
		return true
	case sdk.StateUnknown.String():
		return a.Full
	}
	return false
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var _ prometheus.Collector = (*SourceCollector)(nil)
