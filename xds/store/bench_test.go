package store

import (
	"fmt"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/protobuf/proto"
)

// benchStream is one client stream as go-control-plane's server keeps it:
// per type a subscription, and one channel for all types (ADS).
type benchStream struct {
	ch    chan cachev3.Response
	types map[string]*benchType
}

type benchType struct {
	names   []string
	sub     stream.Subscription
	nonce   int
	version string
	cancel  func()
}

func newBenchStream() *benchStream {
	return &benchStream{ch: make(chan cachev3.Response, int(types.UnknownType)), types: map[string]*benchType{}}
}

// request sends the type's next request (the first one, or an ACK of the
// last response) to c.
func (bs *benchStream) request(b *testing.B, c cachev3.ConfigWatcher, typeURL string, names []string) {
	bt := bs.types[typeURL]
	if bt == nil {
		bt = &benchType{names: names, sub: stream.NewSotwSubscription(names, true)}
		bs.types[typeURL] = bt
	} else {
		bt.cancel()
		bt.sub.SetResourceSubscription(bt.names)
	}
	nonce := ""
	if bt.nonce > 0 {
		nonce = fmt.Sprint(bt.nonce)
	}
	req := &discovery.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: bt.names, VersionInfo: bt.version, ResponseNonce: nonce}
	cancel, err := c.CreateWatch(req, bt.sub, bs.ch)
	if err != nil {
		b.Fatal(err)
	}
	if cancel == nil {
		cancel = func() {}
	}
	bt.cancel = cancel
}

// take consumes the pending responses as the server does before writing
// them to the wire: GetDiscoveryResponse, then GetReturnedResources into the
// subscription. With marshal set it also marshals each response, as gRPC
// would. It returns the number of responses and the bytes marshalled.
func (bs *benchStream) take(b *testing.B, want int, marshal bool) (n, size int) {
	for range want {
		var r cachev3.Response
		select {
		case r = <-bs.ch:
		default:
			b.Fatalf("%d responses, want %d", n, want)
		}
		out, err := r.GetDiscoveryResponse()
		if err != nil {
			b.Fatal(err)
		}
		bt := bs.types[r.GetRequest().GetTypeUrl()]
		bt.nonce++
		out.Nonce = fmt.Sprint(bt.nonce)
		bt.version = out.GetVersionInfo()
		bt.sub.SetReturnedResources(r.GetReturnedResources())
		if marshal {
			buf, err := proto.Marshal(out)
			if err != nil {
				b.Fatal(err)
			}
			size += len(buf)
		}
		n++
	}
	return n, size
}

func (bs *benchStream) close() {
	for _, bt := range bs.types {
		bt.cancel()
	}
}

// benchCache is the store or go-control-plane's LinearCache (one per type)
// behind the same harness.
type benchCache struct {
	watcher cachev3.ConfigWatcher
	set     func(b *testing.B, items []Item)
}

func newBenchStore() benchCache {
	s := New(nil)
	return benchCache{watcher: s, set: func(b *testing.B, items []Item) {
		if err := s.Apply(items, nil); err != nil {
			b.Fatal(err)
		}
	}}
}

func newBenchLinear(typeURLs ...string) benchCache {
	mux := &cachev3.MuxCache{
		Classify: func(r *cachev3.Request) string { return r.GetTypeUrl() },
		Caches:   map[string]cachev3.Cache{},
	}
	for _, typeURL := range typeURLs {
		mux.Caches[typeURL] = cachev3.NewLinearCache(typeURL)
	}
	return benchCache{watcher: mux, set: func(b *testing.B, items []Item) {
		byType := map[string]map[string]types.Resource{}
		for _, it := range items {
			if byType[it.TypeURL] == nil {
				byType[it.TypeURL] = map[string]types.Resource{}
			}
			byType[it.TypeURL][it.Name] = it.Resource
		}
		for typeURL, rs := range byType {
			lc := mux.Caches[typeURL].(*cachev3.LinearCache)
			if len(rs) == 1 {
				for name, r := range rs {
					if err := lc.UpdateResource(name, r); err != nil {
						b.Fatal(err)
					}
				}
				continue
			}
			if err := lc.UpdateResources(rs, nil); err != nil {
				b.Fatal(err)
			}
		}
	}}
}

// BenchmarkOneOfManyChanged: 1,000 ClusterLoadAssignments of 10 endpoints,
// 500 SotW EDS watches each subscribed to all 1,000 names; one assignment
// changes per iteration.
//
// "apply" measures Apply alone: the change and the notification of every
// watch, all under the cache's lock. "notify" adds building every response
// (GetDiscoveryResponse + GetReturnedResources), which the server does in
// each stream's goroutine. "cycle" adds what the server does next for each
// client: cancel the fired watch and create the next one from the ACK
// (1,000 names each).
func BenchmarkOneOfManyChanged(b *testing.B) {
	const (
		assignments = 1000
		endpoints   = 10
		clients     = 500
	)
	names := make([]string, assignments)
	initial := make([]Item, assignments)
	for i := range names {
		names[i] = fmt.Sprintf("cluster-%04d", i)
		initial[i] = Item{TypeURL: edsType, Name: names[i], Resource: cla(names[i], endpoints, 0)}
	}
	for _, impl := range []struct {
		name string
		new  func() benchCache
	}{
		{"store", newBenchStore},
		{"linear", func() benchCache { return newBenchLinear(edsType) }},
	} {
		for _, mode := range []string{"apply", "notify", "cycle"} {
			b.Run(impl.name+"/"+mode, func(b *testing.B) {
				c := impl.new()
				c.set(b, initial)
				streams := make([]*benchStream, clients)
				for i := range streams {
					streams[i] = newBenchStream()
					streams[i].request(b, c.watcher, edsType, names)
					streams[i].take(b, 1, false)
					streams[i].request(b, c.watcher, edsType, names)
				}
				defer func() {
					for _, bs := range streams {
						bs.close()
					}
				}()
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					name := names[i%assignments]
					c.set(b, []Item{{TypeURL: edsType, Name: name, Resource: cla(name, endpoints, i+1)}})
					if mode == "apply" {
						b.StopTimer()
					}
					for _, bs := range streams {
						bs.take(b, 1, false)
					}
					if mode == "notify" {
						b.StopTimer()
					}
					for _, bs := range streams {
						bs.request(b, c.watcher, edsType, names)
					}
					b.StartTimer()
				}
			})
		}
	}
}

// BenchmarkFullPush: 100 clusters and their assignments of 100 endpoints
// each all change at once, pushed to 500 ADS clients with wildcard CDS and
// EDS watches. "wire" also marshals every response, as gRPC would.
func BenchmarkFullPush(b *testing.B) {
	const (
		clusters  = 100
		endpoints = 100
		clients   = 500
	)
	state := func(rev int) []Item {
		out := make([]Item, 0, 2*clusters)
		for i := range clusters {
			name := fmt.Sprintf("cluster-%03d", i)
			out = append(out,
				Item{TypeURL: cdsType, Name: name, Resource: cluster(name, rev)},
				Item{TypeURL: edsType, Name: name, Resource: cla(name, endpoints, rev)})
		}
		return out
	}
	for _, impl := range []struct {
		name string
		new  func() benchCache
	}{
		{"store", newBenchStore},
		{"linear", func() benchCache { return newBenchLinear(cdsType, edsType) }},
	} {
		for _, wire := range []bool{false, true} {
			mode := "notify"
			if wire {
				mode = "wire"
			}
			b.Run(impl.name+"/"+mode, func(b *testing.B) {
				c := impl.new()
				c.set(b, state(0))
				streams := make([]*benchStream, clients)
				for i := range streams {
					bs := newBenchStream()
					streams[i] = bs
					bs.request(b, c.watcher, cdsType, nil)
					bs.request(b, c.watcher, edsType, nil)
					bs.take(b, 2, false)
					bs.request(b, c.watcher, cdsType, nil)
					bs.request(b, c.watcher, edsType, nil)
				}
				defer func() {
					for _, bs := range streams {
						bs.close()
					}
				}()
				b.ReportAllocs()
				b.ResetTimer()
				var bytes int
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					next := state(i + 1) // building the protos is the translator's cost
					b.StartTimer()
					c.set(b, next)
					for _, bs := range streams {
						_, n := bs.take(b, 2, wire)
						bytes += n
					}
					b.StopTimer()
					for _, bs := range streams {
						bs.request(b, c.watcher, cdsType, nil)
						bs.request(b, c.watcher, edsType, nil)
					}
					b.StartTimer()
				}
				if wire {
					b.ReportMetric(float64(bytes)/float64(b.N)/float64(clients), "wire_B/client")
				}
			})
		}
	}
}
