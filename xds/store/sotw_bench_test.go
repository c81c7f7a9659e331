package store

import (
	"fmt"
	"testing"
)

// BenchmarkSubOneOfManyChanged is BenchmarkOneOfManyChanged served through
// Subs, as the xds package's SotW streams are: "apply" is Apply alone,
// "notify" adds taking every response, "cycle" adds every client's ACK,
// which arms its Sub again.
func BenchmarkSubOneOfManyChanged(b *testing.B) {
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
	for _, mode := range []string{"apply", "notify", "cycle"} {
		b.Run(mode, func(b *testing.B) {
			s := New(nil)
			if err := s.Apply(initial, nil); err != nil {
				b.Fatal(err)
			}
			subs := make([]*Sub, clients)
			for i := range subs {
				subs[i] = s.Subscribe(edsType, false, names, func() {})
				if subs[i].Take() == nil {
					b.Fatal("no first response")
				}
				subs[i].Arm(false)
			}
			defer func() {
				for _, sub := range subs {
					sub.Close()
				}
			}()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				name := names[i%assignments]
				if err := s.Apply([]Item{{TypeURL: edsType, Name: name, Resource: cla(name, endpoints, i+1)}}, nil); err != nil {
					b.Fatal(err)
				}
				if mode == "apply" {
					b.StopTimer()
				}
				for _, sub := range subs {
					if r := sub.Take(); r == nil || len(r.Resources) != 1 {
						b.Fatal("no response with the changed resource")
					}
				}
				if mode == "notify" {
					b.StopTimer()
				}
				for _, sub := range subs {
					sub.Arm(false)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkSubFullPush is BenchmarkFullPush served through Subs: every
// response is taken already encoded ("wire" counts its bytes).
func BenchmarkSubFullPush(b *testing.B) {
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
	s := New(nil)
	if err := s.Apply(state(0), nil); err != nil {
		b.Fatal(err)
	}
	subs := make([][2]*Sub, clients)
	for i := range subs {
		for j, typeURL := range []string{cdsType, edsType} {
			subs[i][j] = s.Subscribe(typeURL, true, nil, func() {})
			subs[i][j].Take()
			subs[i][j].Arm(false)
		}
	}
	defer func() {
		for _, pair := range subs {
			pair[0].Close()
			pair[1].Close()
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	var bytes int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		next := state(i + 1) // building the protos is the translator's cost
		b.StartTimer()
		if err := s.Apply(next, nil); err != nil {
			b.Fatal(err)
		}
		for _, pair := range subs {
			for _, sub := range pair {
				r := sub.Take()
				if r == nil {
					b.Fatal("no response")
				}
				bytes += len(r.Body)
			}
		}
		b.StopTimer()
		for _, pair := range subs {
			pair[0].Arm(false)
			pair[1].Arm(false)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(bytes)/float64(b.N)/float64(clients), "wire_B/client")
}
