package aggregator_test

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/sdk/overlay"
	"github.com/xdsbridge/xdsbridge/xds/translate"
)

// op is one update from one source.
type op struct {
	source string
	u      sdk.Update
}

// fuzzReader hands out the fuzz input a byte at a time; past the end it
// gives zeros.
type fuzzReader struct{ b []byte }

func (r *fuzzReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func pickFrom[T any](r *fuzzReader, xs []T) T { return xs[int(r.byte())%len(xs)] }

func mustBytes(m proto.Message) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

var (
	fuzzNames     = []string{"a", "b", "c", "", "é", "a.b-c_d", "zz"}
	fuzzAddresses = []string{"10.0.0.1", "10.0.0.2", "::1", "::ffff:10.0.0.1", "0:0:0:0:0:0:0:1", "fe80::1%eth0",
		"not-an-ip", "", "2001:db8::1", "255.255.255.255", "0.0.0.0", " 10.0.0.1", "10.0.0.1:80", "010.0.0.1"}
	fuzzPorts      = []uint32{0, 1, 80, 80, 443, 65535, 65536, 70000, math.MaxUint32}
	fuzzWeights    = []uint32{0, 1, 2, 1000, math.MaxUint32}
	fuzzPriorities = []uint32{0, 0, 1, 3, 4_000_000_000}
	fuzzLocalities = []sdk.Locality{{}, {Region: "r1", Zone: "z1"}, {Region: "r1", Zone: "z2"}, {Region: "r2"}, {SubZone: "s"}}
	fuzzMetadata   = []map[string]any{nil, {"k": "v"}, {"n": 1.5, "l": []any{"x", true, nil}, "m": map[string]any{"deep": "yes"}}}
	fuzzOverlays   = [][]byte{nil, nil,
		mustBytes(&clusterv3.Cluster{ConnectTimeout: durationpb.New(time.Second)}),
		mustBytes(&clusterv3.Cluster{ConnectTimeout: durationpb.New(2 * time.Second)}),
		{0xff, 0xff, 0xff},
		mustBytes(&clusterv3.Cluster{Name: "other"}),
		mustBytes(&clusterv3.Cluster{ConnectTimeout: durationpb.New(-time.Second)}),
	}
	fuzzResources = []sdk.Resource{
		{TypeURL: resource.ListenerType, Value: mustBytes(&listenerv3.Listener{Name: "l1"})},
		{TypeURL: resource.ListenerType, Value: mustBytes(&listenerv3.Listener{Name: "l2"})},
		{TypeURL: resource.ListenerType, Value: []byte{0xff, 0xff}},
		{TypeURL: resource.ListenerType},
		{TypeURL: resource.RouteType, Value: mustBytes(&routev3.RouteConfiguration{Name: "r1"})},
		{TypeURL: resource.RouteType, Value: mustBytes(&routev3.RouteConfiguration{Name: "r1", VirtualHosts: []*routev3.VirtualHost{{Name: "v"}}})},
		{TypeURL: "type.googleapis.com/no.such.Type", Value: []byte("x")},
		{TypeURL: "no-slash", Value: nil},
		{TypeURL: resource.ListenerType, Name: "claimed", Value: mustBytes(&listenerv3.Listener{Name: "l1"})},
	}
	fuzzRefs = []sdk.ResourceRef{{TypeURL: resource.ListenerType, Name: "l1"}, {TypeURL: resource.RouteType, Name: "r1"}, {TypeURL: resource.ListenerType, Name: "none"}, {}}
)

// decodeOps turns fuzz input into a sequence of updates from three sources.
func decodeOps(data []byte) []op {
	r := &fuzzReader{b: data}
	var ops []op
	for len(r.b) > 0 && len(ops) < 12 {
		flags := r.byte()
		o := op{source: fmt.Sprintf("s%d", flags%3)}
		o.u.Full = flags&4 != 0
		if flags&8 != 0 {
			o.u.Status = &sdk.Status{State: sdk.State(flags >> 6), Reason: "fuzz"}
		}
		for range int(r.byte() % 5) {
			c := sdk.Cluster{Name: pickFrom(r, fuzzNames), Overlay: pickFrom(r, fuzzOverlays)}
			for range int(r.byte() % 6) {
				c.Endpoints = append(c.Endpoints, sdk.Endpoint{
					Address:  pickFrom(r, fuzzAddresses),
					Port:     pickFrom(r, fuzzPorts),
					Weight:   pickFrom(r, fuzzWeights),
					Health:   sdk.Health(int(r.byte()%7) - 1),
					Priority: pickFrom(r, fuzzPriorities),
					Locality: pickFrom(r, fuzzLocalities),
					Metadata: pickFrom(r, fuzzMetadata),
					Hostname: pickFrom(r, []string{"", "h", "host.example"}),
				})
			}
			o.u.Clusters = append(o.u.Clusters, c)
		}
		for range int(r.byte() % 3) {
			o.u.RemovedClusters = append(o.u.RemovedClusters, pickFrom(r, fuzzNames))
		}
		for range int(r.byte() % 3) {
			o.u.Resources = append(o.u.Resources, pickFrom(r, fuzzResources))
		}
		for range int(r.byte() % 2) {
			o.u.RemovedResources = append(o.u.RemovedResources, pickFrom(r, fuzzRefs))
		}
		ops = append(ops, o)
	}
	return ops
}

// served is what a client would be served: the model rebuilt from Changes.
type served struct {
	clusters  map[string]*aggregator.Cluster
	resources map[sdk.ResourceRef]*aggregator.Resource
}

const sentinelSource = "zz-sentinel"

func isSentinel(name string) bool { return len(name) > 12 && name[:12] == "zz-sentinel-" }

// run feeds ops to a fresh aggregator and returns every Change it
// published. With sync, it waits after each op until the builder has
// caught up (a sentinel cluster from a source of its own comes back), so
// every op gets its own build; without, the builder starts after the last
// op and builds once.
func run(t *testing.T, ops []op, sync_ bool) []*aggregator.Change {
	t.Helper()
	var (
		mu      sync.Mutex
		changes []*aggregator.Change
		got     = make(chan string, 1024)
	)
	a := aggregator.New(aggregator.Options{
		CheckOverlay: overlay.Validate,
		Publish: func(_ context.Context, c *aggregator.Change) {
			mu.Lock()
			changes = append(changes, c)
			mu.Unlock()
			for _, cl := range c.Clusters {
				if isSentinel(cl.Name) {
					select {
					case got <- cl.Name:
					default: // never blocks the builder
					}
				}
			}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := func() { go func() { _ = a.Run(ctx); close(done) }() }
	defer func() { cancel(); <-done }()
	if sync_ {
		start()
	}
	for i, o := range ops {
		a.Apply(o.source, o.u)
		if !sync_ {
			continue
		}
		name := fmt.Sprintf("zz-sentinel-%d", i)
		a.Apply(sentinelSource, sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: name}}})
		deadline := time.After(10 * time.Second)
	wait:
		for {
			select {
			case n := <-got:
				if n == name {
					break wait
				}
			case <-deadline:
				t.Fatalf("op %d: the builder did not catch up", i)
			}
		}
	}
	if !sync_ {
		start()
		select {
		case <-a.Ready():
		case <-time.After(10 * time.Second):
			t.Fatal("the aggregator never became ready")
		}
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	return changes
}

// apply checks one Change against what is served and applies it.
func (s *served) apply(t *testing.T, c *aggregator.Change) {
	t.Helper()
	seen := map[string]bool{}
	for _, name := range c.RemovedClusters {
		if _, ok := s.clusters[name]; !ok {
			t.Errorf("cluster %q removed but never served", name)
		}
		if seen[name] {
			t.Errorf("cluster %q twice in one change", name)
		}
		seen[name] = true
		delete(s.clusters, name)
	}
	for _, cl := range c.Clusters {
		if seen[cl.Name] {
			t.Errorf("cluster %q twice in one change", cl.Name)
		}
		seen[cl.Name] = true
		if old, ok := s.clusters[cl.Name]; ok && reflect.DeepEqual(old, cl) {
			t.Errorf("cluster %q published unchanged", cl.Name)
		}
		checkCluster(t, cl)
		s.clusters[cl.Name] = cl
	}
	seenRef := map[sdk.ResourceRef]bool{}
	for _, ref := range c.RemovedResources {
		if _, ok := s.resources[ref]; !ok {
			t.Errorf("resource %v removed but never served", ref)
		}
		seenRef[ref] = true
		delete(s.resources, ref)
	}
	for _, r := range c.Resources {
		ref := sdk.ResourceRef{TypeURL: r.TypeURL, Name: r.Name}
		if seenRef[ref] {
			t.Errorf("resource %v twice in one change", ref)
		}
		seenRef[ref] = true
		checkResource(t, r)
		s.resources[ref] = r
	}
}

// checkCluster: a published cluster is one Envoy and gRPC accept.
func checkCluster(t *testing.T, c *aggregator.Cluster) {
	t.Helper()
	if c.Name == "" {
		t.Fatal("published a cluster without a name")
	}
	if len(c.Sources) == 0 || !slices.IsSorted(c.Sources) || len(slices.Compact(slices.Clone(c.Sources))) != len(c.Sources) {
		t.Errorf("cluster %q: sources %v not sorted and unique", c.Name, c.Sources)
	}
	type key struct {
		a netip.Addr
		p uint32
	}
	seen := map[key]bool{}
	for i, e := range c.Endpoints {
		addr, err := netip.ParseAddr(e.Address)
		switch {
		case err != nil || addr.Zone() != "":
			t.Errorf("cluster %q: endpoint %q is not an IP address", c.Name, e.Address)
		case addr.Unmap().String() != e.Address:
			t.Errorf("cluster %q: endpoint address %q is not in canonical form", c.Name, e.Address)
		case e.Port == 0 || e.Port > 65535:
			t.Errorf("cluster %q: endpoint port %d", c.Name, e.Port)
		case e.Health < sdk.HealthUnknown || e.Health > sdk.Degraded:
			t.Errorf("cluster %q: endpoint health %d", c.Name, e.Health)
		}
		k := key{addr.Unmap(), e.Port}
		if seen[k] {
			t.Errorf("cluster %q: endpoint %s:%d twice", c.Name, e.Address, e.Port)
		}
		seen[k] = true
		if len(e.Sources) == 0 || !slices.IsSorted(e.Sources) {
			t.Errorf("cluster %q: endpoint %s sources %v", c.Name, e.Address, e.Sources)
		}
		for _, s := range e.Sources {
			if !slices.Contains(c.Sources, s) {
				t.Errorf("cluster %q: endpoint %s from %q, not one of the cluster's sources", c.Name, e.Address, s)
			}
		}
		if i > 0 {
			p := c.Endpoints[i-1]
			if cmp.Or(cmp.Compare(p.Priority, e.Priority), cmp.Compare(p.Locality.Region, e.Locality.Region),
				cmp.Compare(p.Locality.Zone, e.Locality.Zone), cmp.Compare(p.Locality.SubZone, e.Locality.SubZone)) > 0 {
				t.Errorf("cluster %q: endpoints not sorted", c.Name)
			}
		}
	}
	cds, err := translate.Cluster(c)
	if err != nil {
		t.Errorf("cluster %q: published but does not translate: %v", c.Name, err)
	} else if err := cds.ValidateAll(); err != nil {
		t.Errorf("cluster %q: invalid CDS resource: %v", c.Name, err)
	}
	cla := translate.LoadAssignment(c)
	if err := cla.ValidateAll(); err != nil {
		t.Errorf("cluster %q: invalid EDS resource: %v", c.Name, err)
	}
	n := 0
	for i, l := range cla.GetEndpoints() {
		n += len(l.GetLbEndpoints())
		if i > 0 && l.GetPriority() != cla.GetEndpoints()[i-1].GetPriority() && l.GetPriority() != cla.GetEndpoints()[i-1].GetPriority()+1 {
			t.Errorf("cluster %q: priorities skip from %d to %d", c.Name, cla.GetEndpoints()[i-1].GetPriority(), l.GetPriority())
		}
		var sum uint64
		for _, e := range l.GetLbEndpoints() {
			sum += uint64(e.GetLoadBalancingWeight().GetValue())
		}
		if sum > math.MaxUint32 || l.GetLoadBalancingWeight().GetValue() == 0 {
			t.Errorf("cluster %q: locality weights sum to %d, weight %d", c.Name, sum, l.GetLoadBalancingWeight().GetValue())
		}
	}
	if n != len(c.Endpoints) {
		t.Errorf("cluster %q: %d endpoints in, %d served", c.Name, len(c.Endpoints), n)
	}
}

// checkResource: a published resource parses, validates and has its name.
func checkResource(t *testing.T, r *aggregator.Resource) {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(r.TypeURL)
	if err != nil {
		t.Fatalf("published a resource of unknown type %q", r.TypeURL)
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(r.Value, m); err != nil {
		t.Fatalf("published a %s that does not parse: %v", r.TypeURL, err)
	}
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			t.Errorf("published an invalid %s: %v", r.TypeURL, err)
		}
	}
	fd := m.ProtoReflect().Descriptor().Fields().ByName("name")
	if fd == nil || r.Name == "" || m.ProtoReflect().Get(fd).String() != r.Name {
		t.Errorf("published %s under name %q", r.TypeURL, r.Name)
	}
	if len(r.Sources) == 0 || !slices.IsSorted(r.Sources) {
		t.Errorf("resource %q: sources %v", r.Name, r.Sources)
	}
}

// FuzzApply sends arbitrary update sequences from three sources through a
// running aggregator. Nothing may panic; every published cluster and
// resource must be valid (and translate into resources Envoy's validation
// accepts); no change may remove what was never served or repeat what is
// served; and building after every update must end in exactly the model
// that one build after all of them gives.
func FuzzApply(f *testing.F) {
	for _, seed := range [][]byte{
		{},
		{4, 1, 0, 0, 2, 0, 2, 3, 4, 0, 1, 0, 0, 0},                // one full state, one cluster with endpoints
		{4, 2, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0}, // two clusters from one source
		{4, 1, 0, 2, 3, 0, 2, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0,
			5, 1, 0, 3, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0}, // two sources, conflicting overlays
		{4, 1, 0, 0, 5, 5, 6, 2, 2, 4, 0, 0, 0, 7, 7, 1, 1, 1, 1, 1, 1, 0, 0, 0},          // bad addresses, ports, health
		{4, 0, 0, 2, 0, 1, 1, 0, 0, 0, 1, 8, 0, 1, 0, 0, 0, 0},                            // resources, then their removal
		{4, 1, 1, 0, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0}, // removals in a change set
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ops := decodeOps(data)
		inc := served{map[string]*aggregator.Cluster{}, map[sdk.ResourceRef]*aggregator.Resource{}}
		for _, c := range run(t, ops, true) {
			inc.apply(t, c)
		}
		for name := range inc.clusters {
			if isSentinel(name) {
				delete(inc.clusters, name)
			}
		}
		once := served{map[string]*aggregator.Cluster{}, map[sdk.ResourceRef]*aggregator.Resource{}}
		for _, c := range run(t, ops, false) {
			once.apply(t, c)
		}
		if !reflect.DeepEqual(inc.clusters, once.clusters) {
			for _, name := range slices.Sorted(mapsKeys(inc.clusters, once.clusters)) {
				if !reflect.DeepEqual(inc.clusters[name], once.clusters[name]) {
					t.Errorf("cluster %q: built after every update %+v, built once %+v", name, inc.clusters[name], once.clusters[name])
				}
			}
		}
		if !reflect.DeepEqual(inc.resources, once.resources) {
			t.Errorf("resources: built after every update %d, built once %d", len(inc.resources), len(once.resources))
		}
	})
}

func mapsKeys[V any](ms ...map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		seen := map[string]bool{}
		for _, m := range ms {
			for k := range m {
				if !seen[k] {
					seen[k] = true
					if !yield(k) {
						return
					}
				}
			}
		}
	}
}
