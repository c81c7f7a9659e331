package aggregator

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/xdsbridge/xdsbridge/sdk"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ep(addr string, port uint32) sdk.Endpoint { return sdk.Endpoint{Address: addr, Port: port} }

func TestValidateCluster(t *testing.T) {
	cases := []struct {
		name       string
		in         sdk.Cluster
		overlayErr error
		wantOK     bool
		wantAddrs  []string
		wantReason []string
	}{
		{"good", sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{ep("10.0.0.1", 80), ep("::1", 80)}}, nil, true, []string{"10.0.0.1", "::1"}, nil},
		{"empty name", sdk.Cluster{Endpoints: []sdk.Endpoint{ep("10.0.0.1", 80)}}, nil, false, nil, []string{ReasonEmptyClusterName}},
		{"hostname", sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{ep("db.local", 80), ep("10.0.0.1", 80)}}, nil, true, []string{"10.0.0.1"}, []string{ReasonBadAddress}},
		{"zone", sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{ep("fe80::1%eth0", 80)}}, nil, true, nil, []string{ReasonBadAddress}},
		{"port 0 and 70000", sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{ep("10.0.0.1", 0), ep("10.0.0.2", 70000), ep("10.0.0.3", 65535)}}, nil, true, []string{"10.0.0.3"}, []string{ReasonBadPort, ReasonBadPort}},
		{"duplicate", sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{ep("10.0.0.1", 80), ep("10.0.0.1", 80), ep("10.0.0.1", 81)}}, nil, true, []string{"10.0.0.1", "10.0.0.1"}, []string{ReasonDuplicateEndpoint}},
		{"v4-mapped duplicate", sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{ep("10.0.0.1", 80), ep("::ffff:10.0.0.1", 80)}}, nil, true, []string{"10.0.0.1"}, []string{ReasonDuplicateEndpoint}},
		{"bad health", sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{{Address: "10.0.0.1", Port: 80, Health: 42}}}, nil, true, nil, []string{ReasonBadHealth}},
		{"bad overlay", sdk.Cluster{Name: "a", Overlay: []byte{1}}, errors.New("nope"), false, nil, []string{ReasonBadOverlay}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			check := func([]byte) error { return tc.overlayErr }
			out, rej, ok := validateCluster("src", &tc.in, check)
			if ok != tc.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tc.wantOK)
			}
			var reasons []string
			for _, r := range rej {
				reasons = append(reasons, r.reason)
				if tc.in.Name != "" && !contains(r.msg, `cluster "a"`) || !contains(r.msg, `source "src"`) {
					t.Errorf("rejection %q does not name the source and cluster", r.msg)
				}
			}
			if diff := cmp.Diff(tc.wantReason, reasons); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
			if !ok {
				return
			}
			var addrs []string
			for _, e := range out.Endpoints {
				addrs = append(addrs, e.Address)
			}
			if diff := cmp.Diff(tc.wantAddrs, addrs); diff != "" {
				t.Errorf("kept endpoints (-want +got):\n%s", diff)
			}
		})
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// harness runs an Aggregator and records what it publishes.
type harness struct {
	agg     *Aggregator
	mu      sync.Mutex
	changes []*Change
	pub     chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

func start(t *testing.T, opts Options) *harness {
	t.Helper()
	h := &harness{pub: make(chan struct{}, 100), done: make(chan struct{})}
	opts.Publish = func(_ context.Context, c *Change) {
		h.mu.Lock()
		h.changes = append(h.changes, c)
		h.mu.Unlock()
		h.pub <- struct{}{}
	}
	h.agg = New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { _ = h.agg.Run(ctx); close(h.done) }()
	t.Cleanup(func() { cancel(); <-h.done })
	return h
}

func (h *harness) next(t *testing.T) *Change {
	t.Helper()
	select {
	case <-h.pub:
	case <-time.After(5 * time.Second):
		t.Fatal("nothing published within 5s")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changes[len(h.changes)-1]
}

func (h *harness) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-h.pub:
		h.mu.Lock()
		defer h.mu.Unlock()
		t.Fatalf("unexpected publish: %+v", h.changes[len(h.changes)-1])
	case <-time.After(d):
	}
}

func names(cs []*Cluster) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestMergeAndProvenance(t *testing.T) {
	h := start(t, Options{Sources: []string{"consul", "dns"}, ReadyTimeout: time.Minute})
	h.agg.Apply("dns", sdk.Update{Full: true, Clusters: []sdk.Cluster{
		{Name: "web", Endpoints: []sdk.Endpoint{{Address: "10.0.0.2", Port: 80, Weight: 7}, ep("10.0.0.3", 80)}},
	}})
	h.none(t, 100*time.Millisecond) // consul has not delivered yet: hold back
	select {
	case <-h.agg.Ready():
		t.Fatal("ready before every source delivered")
	default:
	}
	h.agg.Apply("consul", sdk.Update{Full: true, Clusters: []sdk.Cluster{
		{Name: "web", Endpoints: []sdk.Endpoint{{Address: "10.0.0.2", Port: 80, Weight: 3}, ep("10.0.0.1", 80)}},
		{Name: "db", Endpoints: []sdk.Endpoint{ep("10.0.1.1", 5432)}},
	}})
	c := h.next(t)
	<-h.agg.Ready()
	if diff := cmp.Diff([]string{"db", "web"}, names(c.Clusters)); diff != "" {
		t.Fatalf("clusters (-want +got):\n%s", diff)
	}
	web := c.Clusters[1]
	want := []Endpoint{
		{Endpoint: sdk.Endpoint{Address: "10.0.0.1", Port: 80}, Sources: []string{"consul"}},
		{Endpoint: sdk.Endpoint{Address: "10.0.0.2", Port: 80, Weight: 3}, Sources: []string{"consul", "dns"}}, // consul sorts first and wins
		{Endpoint: sdk.Endpoint{Address: "10.0.0.3", Port: 80}, Sources: []string{"dns"}},
	}
	if diff := cmp.Diff(want, web.Endpoints); diff != "" {
		t.Fatalf("web endpoints (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"consul", "dns"}, web.Sources); diff != "" {
		t.Fatalf("web sources:\n%s", diff)
	}
}

func TestIncrementalChanges(t *testing.T) {
	h := start(t, Options{Sources: []string{"s"}})
	var full []sdk.Cluster
	for _, n := range []string{"a", "b", "c"} {
		full = append(full, sdk.Cluster{Name: n, Endpoints: []sdk.Endpoint{ep("10.0.0.1", 80)}})
	}
	h.agg.Apply("s", sdk.Update{Full: true, Clusters: full})
	if got := names(h.next(t).Clusters); len(got) != 3 {
		t.Fatalf("first build: %v", got)
	}

	// A change set touching b publishes only b.
	h.agg.Apply("s", sdk.Update{Clusters: []sdk.Cluster{{Name: "b", Endpoints: []sdk.Endpoint{ep("10.0.0.2", 80)}}}})
	c := h.next(t)
	if diff := cmp.Diff([]string{"b"}, names(c.Clusters)); diff != "" || len(c.RemovedClusters) != 0 {
		t.Fatalf("change set: clusters %v removed %v", names(c.Clusters), c.RemovedClusters)
	}

	// The same value again publishes nothing.
	h.agg.Apply("s", sdk.Update{Clusters: []sdk.Cluster{{Name: "b", Endpoints: []sdk.Endpoint{ep("10.0.0.2", 80)}}}})
	h.none(t, 100*time.Millisecond)

	// A full state without c removes c and leaves a and b alone.
	h.agg.Apply("s", sdk.Update{Full: true, Clusters: []sdk.Cluster{full[0], {Name: "b", Endpoints: []sdk.Endpoint{ep("10.0.0.2", 80)}}}})
	c = h.next(t)
	if len(c.Clusters) != 0 || !cmp.Equal(c.RemovedClusters, []string{"c"}) {
		t.Fatalf("full state: clusters %v removed %v", names(c.Clusters), c.RemovedClusters)
	}

	// A bad item is rejected alone and counted; the good one is served.
	h.agg.Apply("s", sdk.Update{Clusters: []sdk.Cluster{
		{Name: "a", Endpoints: []sdk.Endpoint{ep("10.0.0.9", 80), ep("10.0.0.9", 0)}},
		{Name: "", Endpoints: []sdk.Endpoint{ep("10.0.0.9", 80)}},
	}})
	c = h.next(t)
	if len(c.Clusters) != 1 || len(c.Clusters[0].Endpoints) != 1 {
		t.Fatalf("bad items: %+v", c.Clusters)
	}
	rej := h.agg.Rejected()
	if rej[ReasonBadPort] != 1 || rej[ReasonEmptyClusterName] != 1 {
		t.Fatalf("rejected counts %v", rej)
	}
}

// A cluster whose overlay is rejected keeps its last good version.
func TestRejectedClusterKeepsLastGood(t *testing.T) {
	h := start(t, Options{Sources: []string{"s"}, CheckOverlay: func(b []byte) error {
		if string(b) == "bad" {
			return errors.New("bad overlay")
		}
		return nil
	}})
	h.agg.Apply("s", sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: "a", Overlay: []byte("good"), Endpoints: []sdk.Endpoint{ep("10.0.0.1", 80)}}}})
	h.next(t)
	h.agg.Apply("s", sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: "a", Overlay: []byte("bad"), Endpoints: []sdk.Endpoint{ep("10.0.0.2", 80)}}}})
	h.none(t, 100*time.Millisecond)
	if h.agg.Rejected()[ReasonBadOverlay] != 1 {
		t.Fatalf("rejection not counted")
	}
}

func TestOverlayConflict(t *testing.T) {
	h := start(t, Options{Sources: []string{"a", "b"}, ReadyTimeout: time.Minute})
	h.agg.Apply("b", sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: "web", Overlay: []byte("B")}}})
	h.agg.Apply("a", sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: "web", Overlay: []byte("A")}}})
	c := h.next(t)
	if string(c.Clusters[0].Overlay) != "A" {
		t.Fatalf("overlay %q, want the first source's", c.Clusters[0].Overlay)
	}
	if h.agg.Rejected()[ReasonConflict] != 1 {
		t.Fatalf("conflict not counted: %v", h.agg.Rejected())
	}
}

func TestReadyTimeout(t *testing.T) {
	h := start(t, Options{Sources: []string{"slow", "fast"}, ReadyTimeout: 100 * time.Millisecond})
	h.agg.Apply("fast", sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: "a"}}})
	c := h.next(t)
	if len(c.Clusters) != 1 {
		t.Fatalf("%+v", c)
	}
	<-h.agg.Ready()
}

// Bursts inside the debounce window are coalesced into one build.
func TestDebounce(t *testing.T) {
	h := start(t, Options{Sources: []string{"s"}, Debounce: 200 * time.Millisecond})
	h.agg.Apply("s", sdk.Update{Full: true})
	<-h.agg.Ready()
	for i := range 50 {
		h.agg.Apply("s", sdk.Update{Clusters: []sdk.Cluster{{Name: "a", Endpoints: []sdk.Endpoint{ep("10.0.0.1", uint32(1000+i))}}}})
	}
	c := h.next(t)
	h.none(t, 300*time.Millisecond)
	if p := c.Clusters[0].Endpoints[0].Port; p != 1049 {
		t.Fatalf("coalesced build has port %d, want the last (1049)", p)
	}
}

func TestResources(t *testing.T) {
	h := start(t, Options{Sources: []string{"s"}})
	h.agg.Apply("s", sdk.Update{Full: true, Resources: []sdk.Resource{{TypeURL: "type.googleapis.com/no.such.Type", Value: []byte{}}}})
	h.none(t, 100*time.Millisecond)
	if h.agg.Rejected()[ReasonBadResource] != 1 {
		t.Fatalf("unknown type not rejected: %v", h.agg.Rejected())
	}
}

// A raw Cluster or ClusterLoadAssignment resource would collide with the
// generated ones: it is rejected, naming the source.
func TestGeneratedTypesRejectedAsResources(t *testing.T) {
	h := start(t, Options{Sources: []string{"s"}})
	h.agg.Apply("s", sdk.Update{Full: true,
		Clusters: []sdk.Cluster{{Name: "good", Endpoints: []sdk.Endpoint{ep("10.0.0.1", 80)}}},
		Resources: []sdk.Resource{
			{TypeURL: "type.googleapis.com/envoy.config.cluster.v3.Cluster", Name: "good", Value: []byte{}},
			{TypeURL: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", Name: "good", Value: []byte{}},
		}})
	c := h.next(t)
	if len(c.Clusters) != 1 || len(c.Resources) != 0 {
		t.Fatalf("published %d clusters and %d resources, want 1 and 0", len(c.Clusters), len(c.Resources))
	}
	if got := h.agg.Rejected()[ReasonBadResource]; got != 2 {
		t.Fatalf("rejected %d resources, want 2", got)
	}
}
