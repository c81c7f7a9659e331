package xds

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/internal/publish"
	"github.com/xdsbridge/xdsbridge/xds/store"
)

// BenchmarkACKAttribution is the cost of attributing one ACK of a
// 1,000-cluster CDS response to its sources: "shared" is the wildcard case,
// where every client is sent the same resource list and all but the first
// ACK hit the cache; "per-client" is a list not seen before (named
// subscriptions), read name by name and looked up in the store.
func BenchmarkACKAttribution(b *testing.B) {
	logger := slog.New(slog.DiscardHandler)
	st := store.New(logger)
	pub := &publish.Publisher{Store: st, Logger: logger}
	change := &aggregator.Change{}
	for i := range 1000 {
		change.Clusters = append(change.Clusters, cluster(fmt.Sprintf("cluster-%04d", i), 80))
	}
	pub.Publish(b.Context(), change)
	var anys []*anypb.Any
	for _, e := range st.Entries() {
		if e.TypeURL == resource.ClusterType {
			a, err := anypb.New(e.Resource)
			if err != nil {
				b.Fatal(err)
			}
			anys = append(anys, a)
		}
	}
	b.Run("shared", func(b *testing.B) {
		a := newAttribution(st)
		b.ReportAllocs()
		for b.Loop() {
			if _, src := a.sotw(resource.ClusterType, anys); len(src) != 1000 {
				b.Fatalf("%d sources", len(src))
			}
		}
	})
	b.Run("per-client", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			a := newAttribution(st) // nothing cached
			if _, src := a.sotw(resource.ClusterType, slices.Clone(anys)); len(src) != 1000 {
				b.Fatalf("%d sources", len(src))
			}
		}
	})
}
