package translate_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/sdk/overlay"
	"github.com/xdsbridge/xdsbridge/xds/translate"
)

var benchSizes = []int{100, 10_000}

// benchCluster is a cluster of n endpoints over two priorities and four
// zones, half of them with metadata, in the aggregator's sorted order.
func benchCluster(b *testing.B, n int) *aggregator.Cluster {
	b.Helper()
	c := generate(rand.New(rand.NewPCG(7, 8)), "bench", n, false)
	ov, err := overlay.Parse(map[string]any{
		"connect_timeout":  "0.25s",
		"lb_policy":        "LEAST_REQUEST",
		"circuit_breakers": map[string]any{"thresholds": []any{map[string]any{"max_connections": 1000}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	c.Overlay = ov
	// Sorted, as the aggregator hands clusters out.
	cla := translate.LoadAssignment(c)
	sorted := c.Endpoints[:0:0]
	index := map[string]aggregator.Endpoint{}
	for _, e := range c.Endpoints {
		index[fmt.Sprintf("%s:%d", e.Address, e.Port)] = e
	}
	for _, lle := range cla.GetEndpoints() {
		for _, lb := range lle.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			sorted = append(sorted, index[fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())])
		}
	}
	if len(sorted) != n {
		b.Fatalf("%d endpoints, want %d", len(sorted), n)
	}
	c.Endpoints = sorted
	return c
}

// BenchmarkLoadAssignment measures building the ClusterLoadAssignment.
func BenchmarkLoadAssignment(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			c := benchCluster(b, n)
			b.ReportAllocs()
			for b.Loop() {
				translate.LoadAssignment(c)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/endpoint")
		})
	}
}

// BenchmarkTranslate measures what a cluster change costs the translator
// and the marshalling after it: Cluster, LoadAssignment, and the
// deterministic bytes of both.
func BenchmarkTranslate(b *testing.B) {
	opts := proto.MarshalOptions{Deterministic: true}
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			c := benchCluster(b, n)
			b.ReportAllocs()
			for b.Loop() {
				cl, err := translate.Cluster(c)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := opts.Marshal(cl); err != nil {
					b.Fatal(err)
				}
				if _, err := opts.Marshal(translate.LoadAssignment(c)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/endpoint")
		})
	}
}

// BenchmarkCluster measures building the Cluster with an overlay.
func BenchmarkCluster(b *testing.B) {
	c := benchCluster(b, 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := translate.Cluster(c); err != nil {
			b.Fatal(err)
		}
	}
}
