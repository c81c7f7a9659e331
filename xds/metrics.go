package xds

import (
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdsbridge/xdsbridge/xds/conns"
)

// metrics are the xDS server's Prometheus metrics: server-side analogs of
// Envoy's control_plane and per-xDS-type statistics.
type metrics struct {
	requests    *prometheus.CounterVec
	responses   *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	acks        *prometheus.CounterVec
	nacks       *prometheus.CounterVec
	pushLatency *prometheus.HistogramVec
	disconnects *prometheus.CounterVec
	rateLimited *prometheus.CounterVec
	pending     prometheus.Gauge
}

// kindREST labels REST requests and responses.
const kindREST = "rest"

func newMetrics(reg prometheus.Registerer, clients *conns.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xdsbridge_xds_requests_total",
			Help: "Discovery requests received, by stream kind (sotw, sotw_ads, delta, delta_ads, rest) and resource type.",
		}, []string{"kind", "type"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xdsbridge_xds_responses_total",
			Help: "Discovery responses (pushes) sent, by stream kind and resource type.",
		}, []string{"kind", "type"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xdsbridge_xds_response_bytes_total",
			Help: "Bytes of discovery responses written (gRPC messages with their framing; REST bodies), by stream kind and resource type.",
		}, []string{"kind", "type"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xdsbridge_xds_acks_total",
			Help: "Responses clients accepted, by resource type and by each source whose resources the response carried (source=\"\" when it carried none).",
		}, []string{"type", "source"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xdsbridge_xds_nacks_total",
			Help: "Responses clients rejected, by resource type and by each source whose resources the response carried (source=\"\" when it carried none).",
		}, []string{"type", "source"}),
		pushLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "xdsbridge_xds_push_latency_seconds",
			Help:    "Time from receiving a source update to writing the response that carries it, for clients subscribed before the update was published.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12), // 1ms … 24s
		}, []string{"type"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xdsbridge_xds_disconnects_total",
			Help: "Clients that went away, by reason (client close, keepalive timeout, server shutdown, server close, connection error, rest idle).",
		}, []string{"reason"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xdsbridge_xds_rate_limit_enforced_total",
			Help: "Discovery requests delayed by the request rate limit, by the limit that delayed them (connection or total).",
		}, []string{"scope"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xdsbridge_xds_pending_requests",
			Help: "Discovery requests being delayed by the request rate limit now.",
		}),
	}
	for _, r := range conns.Reasons() {
		m.disconnects.WithLabelValues(string(r))
	}
	for _, t := range []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType} {
		m.pushLatency.WithLabelValues(typeLabel(t))
	}
	m.rateLimited.WithLabelValues("connection")
	m.rateLimited.WithLabelValues("total")
	reg.MustRegister(m.requests, m.responses, m.bytes, m.acks, m.nacks, m.pushLatency, m.disconnects, m.rateLimited, m.pending,
		&clientsCollector{clients: clients})
	return m
}

// typeLabel is the metric label of a type URL: the message name of a type
// go-control-plane knows (envoy.config.cluster.v3.Cluster), "other" for any
// other, as clients choose the type URLs they request.
func typeLabel(typeURL string) string {
	if cachev3.GetResponseType(typeURL) == types.UnknownType {
		return "other"
	}
	return typeURL[strings.LastIndexByte(typeURL, '/')+1:]
}

// clientsCollector reads the connection registry at scrape time.
type clientsCollector struct {
	clients *conns.Registry
}

var (
	connectionsDesc = prometheus.NewDesc("xdsbridge_xds_connections",
		"Open gRPC connections, with or without streams.", nil, nil)
	streamsDesc = prometheus.NewDesc("xdsbridge_xds_streams",
		"Open xDS streams by kind (sotw, sotw_ads, delta, delta_ads).", []string{"kind"}, nil)
	clientsDesc = prometheus.NewDesc("xdsbridge_xds_connected_clients",
		"Connected clients (distinct node ids) by transport (grpc, rest) and client (envoy, grpc, other, unknown, from the node's user_agent_name). A REST client counts until it has not polled for the REST idle timeout.",
		[]string{"transport", "client"}, nil)
)

func (c *clientsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- connectionsDesc
	ch <- streamsDesc
	ch <- clientsDesc
}

func (c *clientsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.clients.Stats()
	ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.GaugeValue, float64(st.Connections))
	for _, k := range conns.Kinds() {
		ch <- prometheus.MustNewConstMetric(streamsDesc, prometheus.GaugeValue, float64(st.Streams[k]), k.String())
	}
	for _, transport := range []string{"grpc", kindREST} {
		for _, client := range []string{conns.ClientEnvoy, conns.ClientGRPC, conns.ClientOther, conns.ClientUnknown} {
			n := st.Clients[conns.ClientKey{Transport: transport, Client: client}]
			ch <- prometheus.MustNewConstMetric(clientsDesc, prometheus.GaugeValue, float64(n), transport, client)
		}
	}
}
