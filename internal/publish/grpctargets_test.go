package publish

import (
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"text/template"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/sdk/overlay"
	"github.com/xdsbridge/xdsbridge/xds/store"
)

// passthroughListener is a static Listener named name, as a source sends
// it.
func passthroughListener(t *testing.T, name string) *aggregator.Resource {
	t.Helper()
	b, err := proto.Marshal(&listenerv3.Listener{Name: name, StatPrefix: "passthrough"})
	if err != nil {
		t.Fatal(err)
	}
	return &aggregator.Resource{Resource: sdk.Resource{TypeURL: resource.ListenerType, Name: name, Value: b}, Sources: []string{"static"}}
}

// passthroughRoute is a static RouteConfiguration named name sending
// every call to cluster, as a source sends it.
func passthroughRoute(t *testing.T, name, cluster string) *aggregator.Resource {
	t.Helper()
	b, err := proto.Marshal(&routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name: name, Domains: []string{"*"},
		Routes: []*routev3.Route{{Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
		}}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return &aggregator.Resource{Resource: sdk.Resource{TypeURL: resource.RouteType, Name: name, Value: b}, Sources: []string{"static"}}
}

// served describes the Listeners and RouteConfigurations in st: name, and
// "(passthrough)" for a passthrough listener.
func served(st *store.Store) []string {
	var out []string
	for _, e := range st.Entries() {
		switch m := e.Resource.(type) {
		case *listenerv3.Listener:
			s := "L " + e.Name
			if m.GetStatPrefix() == "passthrough" {
				s += " (passthrough)"
			}
			out = append(out, s)
		case *routev3.RouteConfiguration:
			out = append(out, "R "+e.Name+" → "+m.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetCluster())
		}
	}
	slices.Sort(out)
	return out
}

// TestGRPCTargets follows generated listeners and routes through a
// Publisher: they appear and disappear with their clusters, a passthrough
// Listener of the same name replaces the generated one (logged once, and
// reported by Replaced) and gives it back when it goes.
func TestGRPCTargets(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	st := store.New(logger)
	name := template.Must(template.New("name").Parse("{{.Cluster}}.grpc"))
	pub := &Publisher{Store: st, Logger: logger, GRPC: NewGRPCTargets(name, logger)}

	retries, err := overlay.Parse(map[string]any{"route": map[string]any{"retry_policy": map[string]any{"retry_on": "unavailable"}}})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name     string
		change   aggregator.Change
		want     []string
		replaced map[store.Ref]string
	}{
		{
			name:   "two clusters",
			change: aggregator.Change{Clusters: []*aggregator.Cluster{{Name: "web"}, {Name: "api", Overlay: retries}}},
			want:   []string{"L api.grpc", "L web.grpc", "R api.grpc → api", "R web.grpc → web"},
		},
		{
			name:     "a passthrough listener of the same name wins",
			change:   aggregator.Change{Resources: []*aggregator.Resource{passthroughListener(t, "web.grpc")}},
			want:     []string{"L api.grpc", "L web.grpc (passthrough)", "R api.grpc → api", "R web.grpc → web"},
			replaced: map[store.Ref]string{{TypeURL: resource.ListenerType, Name: "web.grpc"}: "web"},
		},
		{
			name:     "the cluster changes, the passthrough listener still wins",
			change:   aggregator.Change{Clusters: []*aggregator.Cluster{{Name: "web", Sources: []string{"s"}}}, Resources: []*aggregator.Resource{passthroughListener(t, "web.grpc")}},
			want:     []string{"L api.grpc", "L web.grpc (passthrough)", "R api.grpc → api", "R web.grpc → web"},
			replaced: map[store.Ref]string{{TypeURL: resource.ListenerType, Name: "web.grpc"}: "web"},
		},
		{
			name:   "the passthrough listener goes: the generated one is back",
			change: aggregator.Change{RemovedResources: []sdk.ResourceRef{{TypeURL: resource.ListenerType, Name: "web.grpc"}}},
			want:   []string{"L api.grpc", "L web.grpc", "R api.grpc → api", "R web.grpc → web"},
		},
		{
			name:   "a cluster goes",
			change: aggregator.Change{RemovedClusters: []string{"api"}},
			want:   []string{"L web.grpc", "R web.grpc → web"},
		},
		{
			name:     "a passthrough listener for a cluster yet to come",
			change:   aggregator.Change{Resources: []*aggregator.Resource{passthroughListener(t, "db.grpc")}},
			want:     []string{"L db.grpc (passthrough)", "L web.grpc", "R web.grpc → web"},
			replaced: map[store.Ref]string{},
		},
		{
			name:     "it comes",
			change:   aggregator.Change{Clusters: []*aggregator.Cluster{{Name: "db"}}},
			want:     []string{"L db.grpc (passthrough)", "L web.grpc", "R db.grpc → db", "R web.grpc → web"},
			replaced: map[store.Ref]string{{TypeURL: resource.ListenerType, Name: "db.grpc"}: "db"},
		},
		{
			name:   "it goes, and the passthrough listener stays",
			change: aggregator.Change{RemovedClusters: []string{"db"}},
			want:   []string{"L db.grpc (passthrough)", "L web.grpc", "R web.grpc → web"},
		},
		{
			name:     "a passthrough route of the same name wins, the generated listener stays",
			change:   aggregator.Change{Resources: []*aggregator.Resource{passthroughRoute(t, "web.grpc", "elsewhere")}},
			want:     []string{"L db.grpc (passthrough)", "L web.grpc", "R web.grpc → elsewhere"},
			replaced: map[store.Ref]string{{TypeURL: resource.RouteType, Name: "web.grpc"}: "web"},
		},
	}
	for _, s := range steps {
		pub.Publish(t.Context(), &s.change)
		if got := served(st); !slices.Equal(got, s.want) {
			t.Fatalf("%s: served %q, want %q", s.name, got, s.want)
		}
		if got := pub.GRPC.Replaced(); !maps.Equal(got, s.replaced) && len(got)+len(s.replaced) > 0 {
			t.Fatalf("%s: replaced %v, want %v", s.name, got, s.replaced)
		}
	}
	if n := strings.Count(logs.String(), "replaces a generated gRPC one"); n != 3 {
		t.Errorf("collisions logged %d times, want 3 (once per collision):\n%s", n, logs.String())
	}
}

// TestGRPCTargetsShared: clusters whose names the template makes equal
// share a target; the first by name is served (logged once), and the next
// takes over when it goes.
func TestGRPCTargetsShared(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	st := store.New(logger)
	name := template.Must(template.New("name").Parse(`{{slice .Cluster 0 1}}`))
	pub := &Publisher{Store: st, Logger: logger, GRPC: NewGRPCTargets(name, logger)}

	pub.Publish(t.Context(), &aggregator.Change{Clusters: []*aggregator.Cluster{{Name: "a-2"}, {Name: "a-1"}, {Name: "b"}}})
	if got, want := served(st), []string{"L a", "L b", "R a → a-1", "R b → b"}; !slices.Equal(got, want) {
		t.Fatalf("served %q, want %q", got, want)
	}
	pub.Publish(t.Context(), &aggregator.Change{Clusters: []*aggregator.Cluster{{Name: "a-2", Sources: []string{"s"}}}})
	pub.Publish(t.Context(), &aggregator.Change{RemovedClusters: []string{"a-1"}})
	if got, want := served(st), []string{"L a", "L b", "R a → a-2", "R b → b"}; !slices.Equal(got, want) {
		t.Fatalf("after a-1 went: served %q, want %q", got, want)
	}
	pub.Publish(t.Context(), &aggregator.Change{RemovedClusters: []string{"a-2"}})
	if got, want := served(st), []string{"L b", "R b → b"}; !slices.Equal(got, want) {
		t.Fatalf("after a-2 went: served %q, want %q", got, want)
	}
	if n := strings.Count(logs.String(), "share a gRPC target name"); n != 1 {
		t.Errorf("sharing logged %d times, want 1:\n%s", n, logs.String())
	}
}

// TestGRPCTargetsFollowOverlay: a cluster's route follows its overlay's
// route settings, and not its endpoints.
func TestGRPCTargetsFollowOverlay(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	st := store.New(logger)
	pub := &Publisher{Store: st, Logger: logger, GRPC: NewGRPCTargets(template.Must(template.New("name").Parse("{{.Cluster}}")), logger)}
	retries, err := overlay.Parse(map[string]any{"route": map[string]any{"retry_policy": map[string]any{"retry_on": "unavailable", "num_retries": 4}}})
	if err != nil {
		t.Fatal(err)
	}
	numRetries := func() uint32 {
		t.Helper()
		e, ok := st.Lookup(resource.RouteType, "web")
		if !ok {
			t.Fatal("no route web")
		}
		return e.Resource.(*routev3.RouteConfiguration).GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetRetryPolicy().GetNumRetries().GetValue()
	}
	steps := []struct {
		name string
		c    *aggregator.Cluster
		want uint32
	}{
		{"no route settings", cluster("web", 80), 0},
		{"route settings", &aggregator.Cluster{Name: "web", Overlay: retries, Endpoints: cluster("web", 80).Endpoints}, 4},
		{"new endpoints, same overlay", &aggregator.Cluster{Name: "web", Overlay: retries, Endpoints: cluster("web", 81).Endpoints}, 4},
		{"no overlay", cluster("web", 81), 0},
	}
	for _, s := range steps {
		pub.Publish(t.Context(), &aggregator.Change{Clusters: []*aggregator.Cluster{s.c}})
		if got := numRetries(); got != s.want {
			t.Errorf("%s: num_retries %d, want %d", s.name, got, s.want)
		}
	}
}

// BenchmarkPublishGRPCListeners is the cost of xds.grpc_listeners in a
// Publish: "full" publishes 1,000 clusters of 10 endpoints each, "one"
// then changes one cluster's endpoints; "off" without generated
// listeners, "on" with them, for the ratio.
func BenchmarkPublishGRPCListeners(b *testing.B) {
	clusters := func(port uint32) []*aggregator.Cluster {
		var out []*aggregator.Cluster
		for i := range 1000 {
			ports := make([]uint32, 10)
			for j := range ports {
				ports[j] = port + uint32(j)
			}
			out = append(out, cluster(fmt.Sprintf("cluster-%04d", i), ports...))
		}
		return out
	}
	full, moved := clusters(8000), clusters(9000)
	logger := slog.New(slog.DiscardHandler)
	for _, on := range []bool{false, true} {
		mode := map[bool]string{false: "off", true: "on"}[on]
		newPub := func() *Publisher {
			pub := &Publisher{Store: store.New(logger), Logger: logger}
			if on {
				pub.GRPC = NewGRPCTargets(template.Must(template.New("name").Parse("{{.Cluster}}")), logger)
			}
			return pub
		}
		b.Run("full/"+mode, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				newPub().Publish(b.Context(), &aggregator.Change{Clusters: full})
			}
		})
		b.Run("one/"+mode, func(b *testing.B) {
			pub := newPub()
			pub.Publish(b.Context(), &aggregator.Change{Clusters: full})
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c := full[i%len(full)]
				if i%2 == 0 {
					c = moved[i%len(full)]
				}
				i++
				pub.Publish(b.Context(), &aggregator.Change{Clusters: []*aggregator.Cluster{c}})
			}
		})
	}
}

// cluster is a cluster named name with an endpoint at 10.0.0.1 on each of
// ports.
func cluster(name string, ports ...uint32) *aggregator.Cluster {
	c := &aggregator.Cluster{Name: name, Sources: []string{"src-" + name}}
	for _, p := range ports {
		c.Endpoints = append(c.Endpoints, aggregator.Endpoint{Endpoint: sdk.Endpoint{Address: "10.0.0.1", Port: p}, Sources: c.Sources})
	}
	return c
}
