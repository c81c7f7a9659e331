package xds

import (
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/xdsbridge/xdsbridge/internal/publish"
	"github.com/xdsbridge/xdsbridge/sdk"
)

type nopSink struct{ n int }

func (s *nopSink) Apply(string, sdk.Update) { s.n++ }

func histogram(t *testing.T, e *env, typeLabel string) *dto.Histogram {
	t.Helper()
	var m dto.Metric
	if err := e.srv.metrics.pushLatency.WithLabelValues(typeLabel).(interface{ Write(*dto.Metric) error }).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram()
}

// Push latency runs from the moment the source update is received (the
// clock's sink, in front of the aggregator) to the moment the response is
// written; it is observed only for clients subscribed before the update
// was published, not for a client's first response.
func TestPushLatency(t *testing.T) {
	clock := publish.NewPushClock()
	e := startEnv(t, Options{Clock: clock})
	e.publish(cluster("a", 80))
	st := e.ads(e.dial())
	node := &core.Node{Id: "pushed"}
	if err := st.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	r := recvSotw(t, st, 5*time.Second)
	if got := histogram(t, e, cdsLabel).GetSampleCount(); got != 0 {
		t.Fatalf("a first response was observed as a push (%d samples)", got)
	}
	if err := st.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}); err != nil {
		t.Fatal(err)
	}

	next := &nopSink{}
	clock.Sink(next).Apply("src", sdk.Update{Status: &sdk.Status{State: sdk.Connected}}) // no data: not a stamp
	received := time.Now()
	clock.Sink(next).Apply("src", sdk.Update{Clusters: []sdk.Cluster{{Name: "b"}}})
	if next.n != 2 {
		t.Fatalf("the clock's sink passed %d updates on, want 2", next.n)
	}
	const held = 150 * time.Millisecond // as debounce and building would
	time.Sleep(held)
	e.publish(cluster("b", 81))
	recvSotw(t, st, 5*time.Second)
	elapsed := time.Since(received)

	var h *dto.Histogram
	eventually(t, 2*time.Second, "the push observed", func() bool {
		h = histogram(t, e, cdsLabel)
		return h.GetSampleCount() == 1
	})
	if got := time.Duration(h.GetSampleSum() * float64(time.Second)); got < held || got > elapsed {
		t.Errorf("push latency = %v, want between %v and %v", got, held, elapsed)
	}

	// A client that subscribes after the publish gets the same version,
	// but not as a push.
	late := e.ads(e.dial())
	if err := late.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "late"}, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	recvSotw(t, late, 5*time.Second)
	time.Sleep(100 * time.Millisecond)
	if got := histogram(t, e, cdsLabel).GetSampleCount(); got != 1 {
		t.Errorf("samples = %d after a late subscriber's first response, want still 1", got)
	}
}

// Resource names are read from the marshalled bytes and agree with
// go-control-plane's GetResourceName for every type the store serves.
func TestAttributionNames(t *testing.T) {
	e := startEnv(t, Options{})
	e.publish(cluster("alpha", 80), cluster("beta", 81))
	a := e.srv.callbacks.attr
	for _, typeURL := range []string{resource.ClusterType, resource.EndpointType} {
		var anys []*anypb.Any
		var want []string
		for _, en := range e.srv.opts.Store.Entries() {
			if en.TypeURL != typeURL {
				continue
			}
			b, err := anypb.New(en.Resource)
			if err != nil {
				t.Fatal(err)
			}
			anys = append(anys, b)
			want = append(want, en.Name)
		}
		names, sources := a.sotw(typeURL, anys)
		if len(names) != 2 || names[0] != want[0] || names[1] != want[1] {
			t.Errorf("%s names = %v, want %v", typeURL, names, want)
		}
		if len(sources) != 2 || sources[0] != "src-alpha" || sources[1] != "src-beta" {
			t.Errorf("%s sources = %v", typeURL, sources)
		}
		if again, _ := a.sotw(typeURL, anys); &again[0] != &names[0] {
			t.Errorf("%s: a response seen before was not answered from the cache", typeURL)
		}
	}
}
