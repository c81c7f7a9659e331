package xds

import (
	"context"
	"net/http"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/xdsbridge/xdsbridge/xds/conns"
)

const (
	cdsLabel = "envoy.config.cluster.v3.Cluster"
	edsLabel = "envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// find returns the first stream of node in the snapshot and its
// connection.
func findStream(s conns.Snapshot, node string) (conns.ConnView, conns.StreamView, bool) {
	for _, c := range s.Connections {
		for _, st := range c.Streams {
			if st.NodeID == node {
				return c, st, true
			}
		}
	}
	return conns.ConnView{}, conns.StreamView{}, false
}

func typeOf(views []conns.TypeView, typeURL string) conns.TypeView {
	for _, v := range views {
		if v.TypeURL == typeURL {
			return v
		}
	}
	return conns.TypeView{}
}

// The registry shows, for a state-of-the-world ADS client, its node, its
// subscriptions, and per type the last response, the last ACK (version and
// nonce) and the last NACK with its error detail; the ACK and NACK counters
// are attributed to the sources of the resources answered.
func TestRegistrySotW(t *testing.T) {
	e := startEnv(t, Options{})
	e.publish(cluster("a", 80), cluster("b", 81))
	st := e.ads(e.dial())
	node := &core.Node{Id: "sotw-1", Cluster: "edge", Locality: &core.Locality{Region: "eu", Zone: "eu-1a"},
		UserAgentName: "envoy", UserAgentVersionType: &core.Node_UserAgentVersion{UserAgentVersion: "1.30.1"}}

	send := func(req *discovery.DiscoveryRequest) {
		t.Helper()
		req.Node = node
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType})
	cds := recvSotw(t, st, 5*time.Second)
	send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: cds.GetVersionInfo(), ResponseNonce: cds.GetNonce()})
	send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: []string{"a"}})
	eds := recvSotw(t, st, 5*time.Second)
	send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: []string{"a"}, ResponseNonce: eds.GetNonce(),
		ErrorDetail: &statuspb.Status{Code: 3, Message: "weights do not add up"}})

	var snap conns.Snapshot
	eventually(t, 5*time.Second, "the NACK in the registry", func() bool {
		snap = e.clients.Snapshot("")
		_, s, ok := findStream(snap, "sotw-1")
		return ok && typeOf(s.Types, resource.EndpointType).NACKs == 1
	})
	c, s, _ := findStream(snap, "sotw-1")
	wantNode := &conns.Node{ID: "sotw-1", Cluster: "edge", Locality: &conns.Locality{Region: "eu", Zone: "eu-1a"},
		UserAgentName: "envoy", UserAgentVersion: "1.30.1"}
	if diff := cmp.Diff(wantNode, c.Node); diff != "" {
		t.Errorf("node (-want +got):\n%s", diff)
	}
	if s.Kind != conns.SotWADS || c.Peer == "" || c.Requests != 4 || c.Responses != 2 || c.BytesSent == 0 {
		t.Errorf("connection = %+v, stream kind %v; want sotw_ads, 4 requests, 2 responses, bytes", c, s.Kind)
	}

	cdsView := typeOf(s.Types, resource.ClusterType)
	if !cdsView.Wildcard || cdsView.ACKs != 1 || cdsView.NACKs != 0 || cdsView.Responses != 1 || cdsView.BytesSent == 0 {
		t.Errorf("CDS = %+v", cdsView)
	}
	if cdsView.LastACK == nil || cdsView.LastACK.Version != cds.GetVersionInfo() || cdsView.LastACK.Nonce != cds.GetNonce() {
		t.Errorf("CDS last ACK = %+v, want version %s nonce %s", cdsView.LastACK, cds.GetVersionInfo(), cds.GetNonce())
	}
	if cdsView.LastSent == nil || cdsView.LastSent.Resources != 2 || cdsView.LastSent.Version != cds.GetVersionInfo() {
		t.Errorf("CDS last sent = %+v", cdsView.LastSent)
	}

	edsView := typeOf(s.Types, resource.EndpointType)
	if diff := cmp.Diff([]string{"a"}, edsView.Subscribed); diff != "" || edsView.Wildcard {
		t.Errorf("EDS subscribed (-want +got):\n%s (wildcard %v)", diff, edsView.Wildcard)
	}
	if edsView.ACKs != 0 || edsView.LastACK != nil {
		t.Errorf("EDS ACKs = %d, last %+v; want none", edsView.ACKs, edsView.LastACK)
	}
	want := &conns.NACKInfo{Version: eds.GetVersionInfo(), Nonce: eds.GetNonce(), Code: 3, Detail: "weights do not add up"}
	if diff := cmp.Diff(want, edsView.LastNACK, cmpIgnoreAt); diff != "" {
		t.Errorf("EDS last NACK (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		what        string
		got, expect float64
	}{
		{"CDS ACK for src-a", e.value(e.srv.metrics.acks.WithLabelValues(cdsLabel, "src-a")), 1},
		{"CDS ACK for src-b", e.value(e.srv.metrics.acks.WithLabelValues(cdsLabel, "src-b")), 1},
		{"EDS NACK for src-a", e.value(e.srv.metrics.nacks.WithLabelValues(edsLabel, "src-a")), 1},
		{"EDS NACK for src-b", e.value(e.srv.metrics.nacks.WithLabelValues(edsLabel, "src-b")), 0},
		{"SotW ADS CDS responses", e.value(e.srv.metrics.responses.WithLabelValues("sotw_ads", cdsLabel)), 1},
		{"SotW ADS requests of EDS", e.value(e.srv.metrics.requests.WithLabelValues("sotw_ads", edsLabel)), 2},
	} {
		if tc.got != tc.expect {
			t.Errorf("%s = %v, want %v", tc.what, tc.got, tc.expect)
		}
	}
	if got := e.value(e.srv.metrics.bytes.WithLabelValues("sotw_ads", cdsLabel)); got != float64(cdsView.BytesSent) {
		t.Errorf("CDS bytes metric = %v, registry says %d", got, cdsView.BytesSent)
	}
}

var cmpIgnoreAt = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".At" }, cmp.Ignore())

// The registry follows a delta client's subscriptions (subscribe and
// unsubscribe), and matches ACKs and NACKs to the system version of the
// response their nonce names.
func TestRegistryDelta(t *testing.T) {
	e := startEnv(t, Options{})
	e.publish(cluster("a", 80), cluster("b", 81))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(e.dial()).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &core.Node{Id: "delta-1", UserAgentName: "grpc-go"}
	send := func(req *discovery.DeltaDiscoveryRequest) {
		t.Helper()
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() *discovery.DeltaDiscoveryResponse {
		t.Helper()
		ch := make(chan *discovery.DeltaDiscoveryResponse, 1)
		go func() {
			r, _ := st.Recv()
			ch <- r
		}()
		select {
		case r := <-ch:
			if r == nil {
				t.Fatal("delta stream ended")
			}
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("no delta response")
		}
		return nil
	}
	send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ClusterType})
	cds := recv()
	send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: cds.GetNonce()})
	send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"a", "b"}})
	eds := recv()
	send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResponseNonce: eds.GetNonce(),
		ResourceNamesUnsubscribe: []string{"b"}, ErrorDetail: &statuspb.Status{Message: "no healthy endpoints"}})

	var snap conns.Snapshot
	eventually(t, 5*time.Second, "the delta NACK in the registry", func() bool {
		snap = e.clients.Snapshot("delta-1")
		_, s, ok := findStream(snap, "delta-1")
		return ok && typeOf(s.Types, resource.EndpointType).NACKs == 1
	})
	_, s, _ := findStream(snap, "delta-1")
	if s.Kind != conns.DeltaADS {
		t.Errorf("kind = %v, want delta_ads", s.Kind)
	}
	cdsView := typeOf(s.Types, resource.ClusterType)
	if cdsView.LastACK == nil || cdsView.LastACK.Version != cds.GetSystemVersionInfo() || cdsView.LastACK.Nonce != cds.GetNonce() || !cdsView.Wildcard {
		t.Errorf("CDS = %+v last ACK %+v; want ACK of %s/%s, wildcard", cdsView, cdsView.LastACK, cds.GetSystemVersionInfo(), cds.GetNonce())
	}
	edsView := typeOf(s.Types, resource.EndpointType)
	if diff := cmp.Diff([]string{"a"}, edsView.Subscribed); diff != "" {
		t.Errorf("EDS subscribed after unsubscribing b (-want +got):\n%s", diff)
	}
	want := &conns.NACKInfo{Version: eds.GetSystemVersionInfo(), Nonce: eds.GetNonce(), Detail: "no healthy endpoints"}
	if diff := cmp.Diff(want, edsView.LastNACK, cmpIgnoreAt); diff != "" {
		t.Errorf("EDS last NACK (-want +got):\n%s", diff)
	}
	if len(snap.Nodes) != 1 || snap.Nodes[0].UserAgentName != "grpc-go" || snap.Nodes[0].Streams != 1 {
		t.Errorf("nodes = %+v", snap.Nodes)
	}
	if got := e.value(e.srv.metrics.nacks.WithLabelValues(edsLabel, "src-b")); got != 1 {
		t.Errorf("EDS NACKs for src-b = %v, want 1 (the response carried a and b)", got)
	}
}

// A REST client is tracked per node: its last request, the version it
// reports, ACKs (once per version it accepts; polls at that version are not
// ACKs again) and NACKs with their detail.
func TestRegistryREST(t *testing.T) {
	e := startEnv(t, Options{})
	e.publish(cluster("a", 80))
	node := &core.Node{Id: "rest-1", Cluster: "pollers"}
	code, r1 := e.rest("/v3/discovery:clusters", &discovery.DiscoveryRequest{Node: node})
	if code != http.StatusOK {
		t.Fatalf("first poll: %d", code)
	}
	for range 2 {
		if code, _ := e.rest("/v3/discovery:clusters", &discovery.DiscoveryRequest{Node: node, VersionInfo: r1.GetVersionInfo()}); code != http.StatusNotModified {
			t.Fatalf("poll at the current version: %d, want 304", code)
		}
	}
	e.publish(cluster("c", 82))
	code, r2 := e.rest("/v3/discovery:clusters", &discovery.DiscoveryRequest{Node: node, VersionInfo: r1.GetVersionInfo()})
	if code != http.StatusOK {
		t.Fatalf("poll after a change: %d", code)
	}
	_, _ = e.rest("/v3/discovery:clusters", &discovery.DiscoveryRequest{Node: node, VersionInfo: r1.GetVersionInfo(),
		ErrorDetail: &statuspb.Status{Message: "unknown field"}})

	snap := e.clients.Snapshot("rest-1")
	if len(snap.REST) != 1 {
		t.Fatalf("REST clients = %+v", snap.REST)
	}
	rc := snap.REST[0]
	if rc.Node == nil || rc.Node.Cluster != "pollers" || rc.Requests != 5 {
		t.Errorf("REST client = %+v", rc)
	}
	v := typeOf(rc.Types, resource.ClusterType)
	if v.ACKs != 1 || v.LastACK == nil || v.LastACK.Version != r1.GetVersionInfo() {
		t.Errorf("ACKs = %d, last %+v; want 1 of %s", v.ACKs, v.LastACK, r1.GetVersionInfo())
	}
	if v.NotModified != 2 || v.ReportedVersion != r1.GetVersionInfo() {
		t.Errorf("not modified = %d, reported %q", v.NotModified, v.ReportedVersion)
	}
	want := &conns.NACKInfo{Version: r2.GetVersionInfo(), Detail: "unknown field"}
	if diff := cmp.Diff(want, v.LastNACK, cmpIgnoreAt); diff != "" {
		t.Errorf("last NACK (-want +got):\n%s", diff)
	}
	if v.LastSent == nil || v.BytesSent == 0 {
		t.Errorf("last sent %+v, bytes %d", v.LastSent, v.BytesSent)
	}
	if len(snap.Nodes) != 1 || !snap.Nodes[0].REST {
		t.Errorf("nodes = %+v, want rest-1 marked REST", snap.Nodes)
	}
	if got := e.value(e.srv.metrics.nacks.WithLabelValues(cdsLabel, "src-a")); got != 1 {
		t.Errorf("REST NACKs for src-a = %v", got)
	}
	if got := e.value(e.srv.metrics.requests.WithLabelValues(kindREST, cdsLabel)); got != 5 {
		t.Errorf("REST requests = %v, want 5", got)
	}
}
