package bench_test

// Microbenchmarks of xdsbridge's data path, stage by stage:
//
//	go test -run '^$' -bench . ./bench/
//
// They import the packages under test; none lives inside them.

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/bench/synth"
	"github.com/xdsbridge/xdsbridge/bench/workload"
	"github.com/xdsbridge/xdsbridge/internal/host"
	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/sdk/overlay"
	"github.com/xdsbridge/xdsbridge/xds/store"
	"github.com/xdsbridge/xdsbridge/xds/translate"
)

// states returns two full states of clusters×endpoints that differ in every
// endpoint, so that applying them in turn changes everything.
func states(clusters, endpoints int) [2][]sdk.Cluster {
	var m workload.Model
	m.Apply(workload.Op{Kind: workload.Init, Seq: 1, Endpoints: int32(endpoints), Clusters: workload.Regulars(0, int32(clusters))})
	var out [2][]sdk.Cluster
	for i := range out {
		m.Apply(workload.Op{Kind: workload.Push, Seq: uint32(i + 2)})
		for _, r := range m.Refs() {
			out[i] = append(out[i], m.Cluster(r))
		}
	}
	return out
}

// runAggregator runs an aggregator of one source whose builds signal
// published.
func runAggregator(b *testing.B, published chan struct{}) *aggregator.Aggregator {
	agg := aggregator.New(aggregator.Options{
		Sources:      []string{"s"},
		CheckOverlay: overlay.Validate,
		Publish:      func(context.Context, *aggregator.Change) { published <- struct{}{} },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = agg.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return agg
}

// BenchmarkAggregator: validation, merge and diff of a full state of
// 100,000 endpoints in which every endpoint changed; and of a change set
// of one cluster among 1,000.
func BenchmarkAggregator(b *testing.B) {
	b.Run("full-100x1000", func(b *testing.B) {
		st := states(100, 1000)
		published := make(chan struct{}, 1)
		agg := runAggregator(b, published)
		agg.Apply("s", sdk.Update{Full: true, Clusters: st[1]})
		<-published
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			agg.Apply("s", sdk.Update{Full: true, Clusters: st[i%2]})
			<-published
		}
	})
	b.Run("change-1-of-1000x10", func(b *testing.B) {
		st := states(1000, 10)
		published := make(chan struct{}, 1)
		agg := runAggregator(b, published)
		agg.Apply("s", sdk.Update{Full: true, Clusters: st[0]})
		<-published
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			c := i % 1000
			agg.Apply("s", sdk.Update{Clusters: []sdk.Cluster{st[1-(i/1000)%2][c]}})
			<-published
		}
	})
}

// BenchmarkTranslate: one cluster's ClusterLoadAssignment and Cluster.
func BenchmarkTranslate(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		var m workload.Model
		m.Apply(workload.Op{Kind: workload.Init, Seq: 1, Endpoints: int32(n), Clusters: workload.Regulars(0, 1)})
		c := m.Aggregated(workload.Regular(0))
		b.Run(fmt.Sprintf("LoadAssignment-%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				translate.LoadAssignment(c)
			}
		})
	}
	var m workload.Model
	m.Apply(workload.Op{Kind: workload.Init, Seq: 1, Endpoints: 1, Clusters: workload.Regulars(0, 1)})
	c := m.Aggregated(workload.Regular(0))
	b.Run("Cluster", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := translate.Cluster(c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkVersioning: what a content-hash version costs. "resource" is a
// ClusterLoadAssignment of 100 endpoints marshalled deterministically and
// hashed (SHA-256), as the store does once per resource version. The
// store cases apply changes to a store with no clients and read the type
// version (a hash over every resource's name and version).
func BenchmarkVersioning(b *testing.B) {
	var m workload.Model
	m.Apply(workload.Op{Kind: workload.Init, Seq: 1, Endpoints: 100, Clusters: workload.Regulars(0, 1)})
	cla := translate.LoadAssignment(m.Aggregated(workload.Regular(0)))
	opts := proto.MarshalOptions{Deterministic: true}
	b.Run("resource-100-endpoints", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf, err := opts.Marshal(cla)
			if err != nil {
				b.Fatal(err)
			}
			sha256.Sum256(buf)
		}
	})
	for _, c := range []struct {
		name                string
		clusters, endpoints int
		changed             int
	}{
		{"store-1-of-10000x10", 10000, 10, 1},
		{"store-100-of-100x100", 100, 100, 100},
	} {
		b.Run(c.name, func(b *testing.B) {
			var m workload.Model
			m.Apply(workload.Op{Kind: workload.Init, Seq: 1, Endpoints: int32(c.endpoints), Clusters: workload.Regulars(0, int32(c.clusters))})
			st := store.New(slog.New(slog.DiscardHandler))
			items := func(refs []workload.Ref) []store.Item {
				out := make([]store.Item, len(refs))
				for i, r := range refs {
					out[i] = store.Item{TypeURL: resource.EndpointType, Name: r.Name(), Resource: translate.LoadAssignment(m.Aggregated(r))}
				}
				return out
			}
			if err := st.Apply(items(m.Refs()), nil); err != nil {
				b.Fatal(err)
			}
			// Pre-build the changes: translating is not versioning.
			var batches [][]store.Item
			for i := range 16 {
				var refs []workload.Ref
				for j := range c.changed {
					refs = append(refs, workload.Regular(int32((i*c.changed+j)%c.clusters)))
				}
				m.Apply(workload.Op{Kind: workload.Push, Seq: uint32(i + 2), Clusters: refs})
				batches = append(batches, items(refs))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if err := st.Apply(batches[i%len(batches)], nil); err != nil {
					b.Fatal(err)
				}
				if st.TypeVersion(resource.EndpointType) == "" {
					b.Fatal("no version")
				}
			}
		})
	}
}

// BenchmarkPluginIPC: a full state of 100,000 endpoints from the synthetic
// plugin process to the aggregator — the driver's command, the plugin
// building and sending its update (go-plugin, gRPC, AutoMTLS, split into
// chunks), the host reassembling and converting it, the aggregator
// validating and merging it — until the aggregator publishes.
func BenchmarkPluginIPC(b *testing.B) {
	bin := benchBinary(b)
	const clusters, endpoints = 100, 1000
	dir, err := os.MkdirTemp("", "ipc")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctl, err := synth.Listen(ctx, dir)
	if err != nil {
		b.Fatal(err)
	}
	defer ctl.Close()
	published := make(chan struct{}, 1)
	agg := aggregator.New(aggregator.Options{
		Sources:      []string{workload.SourceName},
		CheckOverlay: overlay.Validate,
		Publish:      func(context.Context, *aggregator.Change) { published <- struct{}{} },
	})
	h := host.New(host.Options{Logger: slog.New(slog.DiscardHandler), Sink: agg}, []host.Plugin{{
		Spec:           host.Spec{Name: workload.SourceName, Command: []string{bin, "plugin"}, Env: host.PluginEnv(), Config: ctl.ConfigYAML()},
		InitialBackoff: 100 * time.Millisecond,
		MaxBackoff:     time.Second,
	}})
	done := make(chan struct{}, 2)
	go func() { _ = agg.Run(ctx); done <- struct{}{} }()
	go func() { _ = h.Run(ctx); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()
	if err := ctl.Accept(ctx); err != nil {
		b.Fatal(err)
	}
	if err := ctl.Send(workload.Op{Kind: workload.Init, Seq: 1, Endpoints: endpoints, Clusters: workload.Regulars(0, clusters)}); err != nil {
		b.Fatal(err)
	}
	<-published
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := ctl.Send(workload.Op{Kind: workload.Full, Seq: uint32(i + 2)}); err != nil {
			b.Fatal(err)
		}
		<-published
	}
	b.ReportMetric(float64(clusters*endpoints), "endpoints/op")
}
