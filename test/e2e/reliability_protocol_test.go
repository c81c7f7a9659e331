package e2e

// Protocol faults, SotW and delta each: NACKs, unknown type URLs, stale and
// garbage nonces, huge subscriptions, clients that never read, and REST
// clients that post nonsense.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// drain collects the SotW responses that arrive within d.
func (s *sotwStream) drain(d time.Duration) []*discovery.DiscoveryResponse {
	var out []*discovery.DiscoveryResponse
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case r := <-s.resps:
			out = append(out, r)
		case err := <-s.errs:
			s.t.Fatalf("stream failed: %v", err)
		case <-t.C:
			return out
		}
	}
}

// drain collects the delta responses that arrive within d.
func (d *deltaStream) drain(dur time.Duration) []*discovery.DeltaDiscoveryResponse {
	var out []*discovery.DeltaDiscoveryResponse
	t := time.NewTimer(dur)
	defer t.Stop()
	for {
		select {
		case r := <-d.resps:
			out = append(out, r)
		case err := <-d.errs:
			d.t.Fatalf("delta stream failed: %v", err)
		case <-t.C:
			return out
		}
	}
}

func (d *deltaStream) nack(r *discovery.DeltaDiscoveryResponse) {
	d.t.Helper()
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce(),
		ErrorDetail: &statuspb.Status{Code: 3, Message: "e2e: rejected on purpose"}})
}

// nackWindow is how long a test waits for a response that must not come:
// well over the static plugin's 50ms reload debounce and the aggregator's.
const nackWindow = 800 * time.Millisecond

// TestReliabilityNACK: a NACKed version is never sent again, however the
// client repeats its NACK and whatever else changes, until the content
// changes; then the new version is delivered. SotW (EDS and CDS) and delta.
func TestReliabilityNACK(t *testing.T) {
	resends := 0
	t.Cleanup(func() { figure(t, "NACK re-sends", "%d", resends) })
	state := map[string][]int{"a": {1001}, "b": {2001}}
	t.Run("sotw eds", func(t *testing.T) {
		b := startBridge(t, map[string]string{"plugins.yaml": staticPlugins, "clusters.yaml": clustersFile(state)})
		s := newSotw(t, dial(t, b.grpcAddr), "nack-sotw")
		s.subscribe(resource.EndpointType, "a")
		r1 := s.recvType(resource.EndpointType, 10*time.Second)
		s.nack(r1, "a") // the first response: version stays ""
		s.nack(r1, "a") // and again
		st := map[string][]int{"a": {1001}, "b": {2001}}
		for i := range 3 { // changes the client is not subscribed to
			st["b"] = append(st["b"], 2100+i)
			b.write("clusters.yaml", clustersFile(st))
			for _, r := range s.drain(nackWindow) {
				if r.GetVersionInfo() == r1.GetVersionInfo() {
					resends++
				}
				t.Errorf("unexpected response %s version %s", r.GetTypeUrl(), r.GetVersionInfo())
			}
		}
		st["a"] = []int{1001, 1002}
		b.write("clusters.yaml", clustersFile(st))
		r2 := s.recvType(resource.EndpointType, 10*time.Second)
		if r2.GetVersionInfo() == r1.GetVersionInfo() || !slices.Equal(ports(cla(t, r2.GetResources()[0])), []int{1001, 1002}) {
			t.Fatalf("after a change: version %s (rejected %s), ports %v", r2.GetVersionInfo(), r1.GetVersionInfo(), ports(cla(t, r2.GetResources()[0])))
		}
		s.ack(r2, "a")
		// A NACK of a later version keeps the accepted one.
		st["a"] = []int{1001, 1002, 1003}
		b.write("clusters.yaml", clustersFile(st))
		r3 := s.recvType(resource.EndpointType, 10*time.Second)
		s.nack(r3, "a")
		st["b"] = append(st["b"], 2200)
		b.write("clusters.yaml", clustersFile(st))
		for _, r := range s.drain(nackWindow) {
			if r.GetVersionInfo() == r3.GetVersionInfo() {
				resends++
			}
			t.Errorf("unexpected response version %s after NACK of %s", r.GetVersionInfo(), r3.GetVersionInfo())
		}
		st["a"] = []int{1001, 1003}
		b.write("clusters.yaml", clustersFile(st))
		r4 := s.recvType(resource.EndpointType, 10*time.Second)
		if r4.GetVersionInfo() == r3.GetVersionInfo() || !slices.Equal(ports(cla(t, r4.GetResources()[0])), []int{1001, 1003}) {
			t.Fatalf("after the second change: version %s, ports %v", r4.GetVersionInfo(), ports(cla(t, r4.GetResources()[0])))
		}
	})
	t.Run("sotw cds", func(t *testing.T) {
		b := startBridge(t, map[string]string{"plugins.yaml": staticPlugins, "clusters.yaml": clustersFile(state)})
		s := newSotw(t, dial(t, b.grpcAddr), "nack-cds")
		s.subscribe(resource.ClusterType)
		r1 := s.recvType(resource.ClusterType, 10*time.Second)
		s.nack(r1)
		st := map[string][]int{"a": {1001, 1005}, "b": {2001}} // endpoints only: CDS unchanged
		b.write("clusters.yaml", clustersFile(st))
		for _, r := range s.drain(nackWindow) {
			if r.GetVersionInfo() == r1.GetVersionInfo() {
				resends++
			}
			t.Errorf("unexpected CDS response version %s", r.GetVersionInfo())
		}
		st["c"] = []int{3001}
		b.write("clusters.yaml", clustersFile(st))
		r2 := s.recvType(resource.ClusterType, 10*time.Second)
		if r2.GetVersionInfo() == r1.GetVersionInfo() || len(r2.GetResources()) != 3 {
			t.Fatalf("after adding a cluster: version %s (rejected %s), %d clusters", r2.GetVersionInfo(), r1.GetVersionInfo(), len(r2.GetResources()))
		}
	})
	t.Run("delta", func(t *testing.T) {
		b := startBridge(t, map[string]string{"plugins.yaml": staticPlugins, "clusters.yaml": clustersFile(state)})
		d := newDelta(t, dial(t, b.grpcAddr), "nack-delta")
		d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"a"}})
		r1 := d.recv(10 * time.Second)
		if len(r1.GetResources()) != 1 {
			t.Fatalf("%d resources", len(r1.GetResources()))
		}
		rejected := r1.GetResources()[0].GetVersion()
		d.nack(r1)
		d.nack(r1)
		st := map[string][]int{"a": {1001}, "b": {2001, 2002}}
		b.write("clusters.yaml", clustersFile(st))
		for _, r := range d.drain(nackWindow) {
			for _, res := range r.GetResources() {
				if res.GetVersion() == rejected {
					resends++
				}
			}
			t.Errorf("unexpected delta response with %d resources", len(r.GetResources()))
		}
		// A new subscription of the same name on the stream does not
		// bring the rejected version back either.
		d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"a", "b"}})
		for _, r := range d.drain(nackWindow) {
			for _, res := range r.GetResources() {
				if res.GetName() == "a" && res.GetVersion() == rejected {
					resends++
					t.Errorf("the rejected version of a was sent again")
				}
			}
			d.ack(r)
		}
		st["a"] = []int{1001, 1002}
		b.write("clusters.yaml", clustersFile(st))
		var got string
		eventually(t, 10*time.Second, "a's next version", func() bool {
			for _, r := range d.drain(100 * time.Millisecond) {
				for _, res := range r.GetResources() {
					if res.GetName() == "a" {
						got = res.GetVersion()
					}
				}
				d.ack(r)
			}
			return got != ""
		})
		if got == rejected {
			t.Fatalf("after a change the rejected version %s came again", got)
		}
	})
}

// TestReliabilityUnknownTypes: requests for types nobody serves, or with no
// type at all, do not disturb the stream's other subscriptions or other
// clients.
func TestReliabilityUnknownTypes(t *testing.T) {
	state := map[string][]int{"a": {1001}}
	b := startBridge(t, map[string]string{"plugins.yaml": staticPlugins, "clusters.yaml": clustersFile(state)})
	cc := dial(t, b.grpcAddr)
	odd := []string{"type.googleapis.com/no.such.Type", "not a type url", strings.Repeat("x", 10000), resource.SecretType, resource.RuntimeType}

	t.Run("sotw", func(t *testing.T) {
		s := newSotw(t, cc, "odd-sotw")
		for _, typ := range odd {
			if err := s.stream.Send(&discovery.DiscoveryRequest{Node: s.node, TypeUrl: typ, ResourceNames: []string{"x"}}); err != nil {
				t.Fatal(err)
			}
		}
		for _, r := range s.drain(300 * time.Millisecond) {
			if len(r.GetResources()) != 0 {
				t.Errorf("a %q request got %d resources", r.GetTypeUrl(), len(r.GetResources()))
			}
		}
		s.subscribe(resource.EndpointType, "a")
		var r *discovery.DiscoveryResponse
		for r == nil || r.GetTypeUrl() != resource.EndpointType {
			r = s.recv(10 * time.Second)
		}
		s.ack(r, "a")
		// An empty type URL ends that stream, as go-control-plane does for
		// ADS, and nothing else.
		bad := newSotw(t, cc, "no-type")
		if err := bad.stream.Send(&discovery.DiscoveryRequest{Node: bad.node}); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-bad.errs:
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("no type URL: %v, want InvalidArgument", err)
			}
		case r := <-bad.resps:
			t.Errorf("no type URL: got a %q response", r.GetTypeUrl())
		case <-time.After(5 * time.Second):
			t.Errorf("no type URL: no answer")
		}
		state["a"] = []int{1001, 1002}
		b.write("clusters.yaml", clustersFile(state))
		r2 := s.recvType(resource.EndpointType, 10*time.Second)
		if !slices.Equal(ports(cla(t, r2.GetResources()[0])), []int{1001, 1002}) {
			t.Fatalf("after the odd requests, ports %v", ports(cla(t, r2.GetResources()[0])))
		}
	})
	t.Run("delta", func(t *testing.T) {
		d := newDelta(t, cc, "odd-delta")
		for _, typ := range odd {
			d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: typ, ResourceNamesSubscribe: []string{"x"}})
		}
		for _, r := range d.drain(300 * time.Millisecond) {
			if len(r.GetResources()) != 0 {
				t.Errorf("a %q request got %d resources", r.GetTypeUrl(), len(r.GetResources()))
			}
		}
		d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"a"}})
		eventually(t, 10*time.Second, "a's endpoints", func() bool {
			for _, r := range d.drain(50 * time.Millisecond) {
				if r.GetTypeUrl() == resource.EndpointType && len(r.GetResources()) == 1 {
					d.ack(r)
					return true
				}
			}
			return false
		})
	})
}

// TestReliabilityNonces: requests with stale, foreign, empty, huge or
// garbage nonces and versions never break a stream nor make the server
// send stale content; the next change is delivered once.
func TestReliabilityNonces(t *testing.T) {
	garbage := []string{"garbage", "0", "-1", strings.Repeat("n", 1<<20), "\u2603 snowman", "nonce-from-elsewhere"}
	t.Run("sotw", func(t *testing.T) {
		state := map[string][]int{"a": {1001}}
		b := startBridge(t, map[string]string{"plugins.yaml": staticPlugins, "clusters.yaml": clustersFile(state)})
		cc := dial(t, b.grpcAddr)
		other := newSotw(t, cc, "other")
		other.subscribe(resource.ClusterType)
		foreign := other.recvType(resource.ClusterType, 10*time.Second).GetNonce()

		s := newSotw(t, cc, "nonces")
		s.subscribe(resource.EndpointType, "a")
		r1 := s.recvType(resource.EndpointType, 10*time.Second)
		s.ack(r1, "a")
		for _, n := range append(garbage, foreign, r1.GetNonce()+"x") {
			for _, v := range []string{"", r1.GetVersionInfo(), "garbage-version"} {
				if err := s.stream.Send(&discovery.DiscoveryRequest{Node: s.node, TypeUrl: resource.EndpointType, ResourceNames: []string{"a"}, VersionInfo: v, ResponseNonce: n}); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, r := range s.drain(nackWindow) {
			if r.GetVersionInfo() != r1.GetVersionInfo() {
				t.Errorf("a garbage nonce brought version %s, current is %s", r.GetVersionInfo(), r1.GetVersionInfo())
			}
		}
		state["a"] = []int{1001, 1002}
		b.write("clusters.yaml", clustersFile(state))
		r2 := s.recvType(resource.EndpointType, 10*time.Second)
		if !slices.Equal(ports(cla(t, r2.GetResources()[0])), []int{1001, 1002}) {
			t.Fatalf("after garbage nonces, ports %v", ports(cla(t, r2.GetResources()[0])))
		}
		s.ack(r2, "a")
		s.quiet(nackWindow) // delivered once
	})
	t.Run("delta", func(t *testing.T) {
		state := map[string][]int{"a": {1001}}
		b := startBridge(t, map[string]string{"plugins.yaml": staticPlugins, "clusters.yaml": clustersFile(state)})
		d := newDelta(t, dial(t, b.grpcAddr), "nonces-delta")
		d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"a"}})
		r1 := d.recv(10 * time.Second)
		d.ack(r1)
		for _, n := range append(garbage, r1.GetNonce()+"x") {
			d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResponseNonce: n})
			d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResponseNonce: n,
				ErrorDetail: &statuspb.Status{Code: 3, Message: "garbage nack"}})
		}
		for _, r := range d.drain(nackWindow) {
			for _, res := range r.GetResources() {
				if res.GetVersion() != r1.GetResources()[0].GetVersion() {
					t.Errorf("a garbage nonce brought version %s", res.GetVersion())
				}
			}
			d.ack(r)
		}
		state["a"] = []int{1001, 1002}
		b.write("clusters.yaml", clustersFile(state))
		var got []string
		eventually(t, 10*time.Second, "the change", func() bool {
			for _, r := range d.drain(50 * time.Millisecond) {
				for _, res := range r.GetResources() {
					got = append(got, res.GetVersion())
				}
				d.ack(r)
			}
			return len(got) > 0
		})
		for _, r := range d.drain(nackWindow) {
			t.Errorf("the change came again: %d resources", len(r.GetResources()))
		}
	})
}

// bridgeRSS is the bridge process's resident memory in bytes.
func bridgeRSS(t testing.TB, b *bridge) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.cmd.Process.Pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestReliabilityHugeSubscription: a client subscribing to 100,000 names,
// the most one request may name (SotW and delta), is answered with what
// exists, and does not slow other clients down; one name more is refused.
func TestReliabilityHugeSubscription(t *testing.T) {
	const n = 100_000
	names := make([]string, 0, n)
	for i := range n - 1 {
		names = append(names, fmt.Sprintf("missing-%06d", i))
	}
	names = append(names, "a")
	state := map[string][]int{"a": {1001}, "b": {2001}}
	b := startBridge(t, map[string]string{"plugins.yaml": staticPlugins, "clusters.yaml": clustersFile(state)})
	cc := dial(t, b.grpcAddr)
	rss0 := bridgeRSS(t, b)

	start := time.Now()
	s := newSotw(t, cc, "huge-sotw")
	s.subscribe(resource.EndpointType, names...)
	r := s.recvType(resource.EndpointType, 30*time.Second)
	sotwTook := time.Since(start)
	if len(r.GetResources()) != 1 || cla(t, r.GetResources()[0]).GetClusterName() != "a" {
		t.Fatalf("SotW: %d resources", len(r.GetResources()))
	}
	s.ack(r, names...)

	start = time.Now()
	d := newDelta(t, cc, "huge-delta")
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: names})
	dr := d.recv(30 * time.Second)
	deltaTook := time.Since(start)
	if len(dr.GetResources()) != 1 || dr.GetResources()[0].GetName() != "a" {
		t.Fatalf("delta: %d resources", len(dr.GetResources()))
	}
	d.ack(dr)

	// Another client's change is not held up by the huge subscribers.
	small := newSotw(t, cc, "small")
	small.subscribe(resource.EndpointType, "b")
	small.ack(small.recvType(resource.EndpointType, 10*time.Second), "b")
	state["b"] = []int{2001, 2002}
	start = time.Now()
	b.write("clusters.yaml", clustersFile(state))
	small.recvType(resource.EndpointType, 10*time.Second)
	otherTook := time.Since(start)

	state["a"] = []int{1001, 1002}
	b.write("clusters.yaml", clustersFile(state))
	if got := ports(cla(t, s.recvType(resource.EndpointType, 10*time.Second).GetResources()[0])); !slices.Equal(got, []int{1001, 1002}) {
		t.Fatalf("SotW huge subscriber: %v", got)
	}
	if dr := d.recv(10 * time.Second); len(dr.GetResources()) != 1 || dr.GetResources()[0].GetName() != "a" {
		t.Fatalf("delta huge subscriber: %d resources", len(dr.GetResources()))
	}
	rss1 := bridgeRSS(t, b)
	figure(t, "100,000-name subscription", "first answer SotW %v, delta %v; another client's change took %v; bridge RSS %d MiB → %d MiB",
		sotwTook.Round(time.Millisecond), deltaTook.Round(time.Millisecond), otherTook.Round(time.Millisecond), rss0>>20, rss1>>20)
	if otherTook > 2*time.Second {
		t.Errorf("a change for another client took %v with huge subscribers connected", otherTook)
	}

	over := newSotw(t, cc, "huge-over")
	over.subscribe(resource.EndpointType, append(slices.Clone(names), "one-more")...)
	select {
	case err := <-over.errs:
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), fmt.Sprintf("request names %d resources, more than the %d allowed", n+1, n)) {
			t.Errorf("a request naming %d resources ended with %v, want ResourceExhausted naming the cap", n+1, err)
		}
	case r := <-over.resps:
		t.Errorf("a request naming %d resources was answered (%d resources)", n+1, len(r.GetResources()))
	case <-time.After(10 * time.Second):
		t.Errorf("a request naming %d resources was neither answered nor refused within 10s", n+1)
	}
}

// TestReliabilitySlowReader: clients that open streams and never read must
// not hold up other clients, and must not make the bridge's memory grow
// with the number of changes.
func TestReliabilitySlowReader(t *testing.T) {
	const clusters, perCluster = 20, 400
	changes := pick(15, 100)
	state := map[string][]int{}
	gen := 0
	render := func() string {
		var sb strings.Builder
		sb.WriteString("clusters:\n")
		for c := range clusters {
			fmt.Fprintf(&sb, "  - name: big-%02d\n    endpoints:\n", c)
			for e := range perCluster {
				fmt.Fprintf(&sb, "      - {address: 10.%d.%d.%d, port: %d}\n", c, e/250, e%250+1, 1000+gen)
			}
		}
		return sb.String()
	}
	_ = state
	b := startBridge(t, map[string]string{"plugins.yaml": staticPlugins, "clusters.yaml": render()})
	names := make([]string, clusters)
	for c := range clusters {
		names[c] = fmt.Sprintf("big-%02d", c)
	}

	// Stalled clients: each on its own connection, subscribed to
	// everything, never reading.
	for i := range 5 {
		cc := dial(t, b.grpcAddr)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		if i%2 == 0 {
			st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
			if err != nil {
				t.Fatal(err)
			}
			node := &core.Node{Id: fmt.Sprintf("stalled-%d", i)}
			_ = st.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType})
			_ = st.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.EndpointType, ResourceNames: names})
		} else {
			st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
			if err != nil {
				t.Fatal(err)
			}
			node := &core.Node{Id: fmt.Sprintf("stalled-%d", i)}
			_ = st.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ClusterType})
			_ = st.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.EndpointType, ResourceNamesSubscribe: names})
		}
	}
	fast := []*watcher{newWatcher(t, b.grpcAddr, "fast-sotw", false, false), newWatcher(t, b.grpcAddr, "fast-delta", true, false)}
	want := func() map[string][]string {
		out := map[string][]string{}
		for c := range clusters {
			var eps []string
			for e := range perCluster {
				eps = append(eps, fmt.Sprintf("10.%d.%d.%d:%d", c, e/250, e%250+1, 1000+gen))
			}
			slices.Sort(eps)
			out[names[c]] = eps
		}
		return out
	}
	for _, w := range fast {
		eventually(t, 20*time.Second, w.node+" to sync", func() bool { return w.holds(want()) })
	}
	var rss []int64
	var worst time.Duration
	for i := range changes {
		gen++
		start := time.Now()
		b.write("clusters.yaml", render())
		wanted := want()
		for _, w := range fast {
			eventually(t, 10*time.Second, fmt.Sprintf("%s to get change %d", w.node, i), func() bool { return w.holds(wanted) })
		}
		worst = max(worst, time.Since(start))
		if i%10 == 9 {
			rss = append(rss, bridgeRSS(t, b))
		}
	}
	mib := make([]int64, len(rss))
	for i, r := range rss {
		mib[i] = r >> 20
	}
	figure(t, "slow readers", "5 stalled streams, %d changes of %d×%d endpoints: slowest delivery to the other clients %v; bridge RSS every 10 changes (MiB) %v",
		changes, clusters, perCluster, worst.Round(time.Millisecond), mib)
	if worst > 5*time.Second {
		t.Errorf("with stalled clients a change took %v to reach the others", worst)
	}
	if len(rss) >= 3 && rss[len(rss)-1] > rss[0]+(200<<20) {
		t.Errorf("bridge RSS grew from %d MiB to %d MiB while clients stalled", rss[0]>>20, rss[len(rss)-1]>>20)
	}
}

// TestReliabilityRESTBadRequests posts nonsense to every REST endpoint:
// each is answered 4xx with a reason, never 5xx, and the server still
// answers good requests afterwards.
func TestReliabilityRESTBadRequests(t *testing.T) {
	b := startBridge(t, map[string]string{"plugins.yaml": staticPlugins, "clusters.yaml": clustersFile(map[string][]int{"a": {1001}})})
	paths := []string{"/v3/discovery:clusters", "/v3/discovery:endpoints", "/v3/discovery:listeners", "/v3/discovery:routes"}
	bodies := []struct {
		name, body string
		want       int
	}{
		{"empty", "", 400},
		{"unclosed", "{not json", 400},
		{"array", "[]", 400},
		{"string", `"x"`, 400},
		{"number", "5", 400},
		{"wrong field type", `{"node": 5}`, 400},
		{"names not a list", `{"resource_names": "a"}`, 400},
		{"unknown field", `{"no_such_field": 1}`, 400},
		{"bad enum", `{"error_detail": {"code": "x"}}`, 400},
		{"invalid UTF-8", "{\"version_info\": \"\xff\"}", 400},
		{"nested too deep", strings.Repeat(`{"node":`, 200) + "{}" + strings.Repeat("}", 200), 400},
		{"trailing garbage", `{} {}`, 400},
		{"binary", "\x00\x01\x02\x03", 400},
	}
	tried := 0
	for _, p := range paths {
		for _, tc := range bodies {
			tried++
			resp, err := http.Post("http://"+b.restAddr+p, "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Errorf("%s %s: %v", p, tc.name, err)
				continue
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want || len(bytes.TrimSpace(msg)) == 0 {
				t.Errorf("%s %s: %d %q, want %d with a reason", p, tc.name, resp.StatusCode, relFirstLine(string(msg)), tc.want)
			}
		}
	}
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		tried++
		req, _ := http.NewRequest(m, "http://"+b.restAddr+paths[0], strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want 405", m, resp.StatusCode)
		}
	}
	for _, p := range []string{"/", "/v3/discovery:nothing", "/v2/discovery:clusters"} {
		tried++
		resp, err := http.Post("http://"+b.restAddr+p, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, resp.StatusCode)
		}
	}
	// A body over the 4 MiB limit is answered 413, saying so.
	var tooBig []string
	for _, p := range paths {
		tried++
		resp, err := http.Post("http://"+b.restAddr+p, "application/json", strings.NewReader(`{"version_info": "`+strings.Repeat("x", 5<<20)+`"}`))
		if err != nil {
			t.Fatalf("%s over 4 MiB: %v", p, err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 || len(bytes.TrimSpace(msg)) == 0 {
			t.Errorf("%s over 4 MiB: %d %q", p, resp.StatusCode, msg)
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !bytes.Contains(msg, []byte("larger than")) {
			tooBig = append(tooBig, fmt.Sprintf("%s: %d %q", p, resp.StatusCode, strings.TrimSpace(string(msg))))
		}
	}
	if len(tooBig) != 0 {
		t.Errorf("a REST body over 4 MiB was not answered 413: %v", tooBig)
	}
	// Still serving.
	resp, err := http.Post("http://"+b.restAddr+paths[0], "application/json", strings.NewReader(`{"node": {"id": "after"}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a good request after the bad ones: %d", resp.StatusCode)
	}
	recordBadInputs(t, "REST requests", tried)
}

// badInputs counts the bad inputs the suite tried, by kind, for the
// closing figure.
var badInputs = struct {
	sync.Mutex
	byKind map[string]int
}{byKind: map[string]int{}}

func recordBadInputs(t testing.TB, kind string, n int) {
	badInputs.Lock()
	badInputs.byKind[kind] += n
	badInputs.Unlock()
	figure(t, "bad inputs tried ("+kind+")", "%d", n)
}
