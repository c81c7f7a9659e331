package store

import (
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/protobuf/proto"
)

// step is one move of a SotW or delta scenario: apply a change, then send a
// request, then check what the client received.
type step struct {
	apply  []res
	remove []Ref
	// do sends a request; nil sends none.
	do func(c sotwDriver)
	// want is the next response: its type and resources, in order. A nil
	// want means no response at all.
	want *sotwWant
}

type sotwWant struct {
	typeURL   string
	resources []proto.Message
}

func want(typeURL string, rs ...res) *sotwWant {
	return &sotwWant{typeURL: typeURL, resources: msgs(rs...)}
}

// sotwDriver plays a SotW stream server over the store: sotwClient with
// watches, as go-control-plane's server does, subClient with Subs, as the
// xds package's does. Both must behave the same.
type sotwDriver interface {
	subscribe(typeURL string, names []string)
	ack(typeURL string)
	nack(typeURL string)
	expect(typeURL string, want []proto.Message)
	expectNone()
}

func sub(typeURL string, names ...string) func(c sotwDriver) {
	return func(c sotwDriver) { c.subscribe(typeURL, names) }
}
func ack(typeURL string) func(c sotwDriver)  { return func(c sotwDriver) { c.ack(typeURL) } }
func nack(typeURL string) func(c sotwDriver) { return func(c sotwDriver) { c.nack(typeURL) } }

func TestSotwWatches(t *testing.T) {
	c1, c2, c3 := res{cdsType, "c1", 1}, res{cdsType, "c2", 1}, res{cdsType, "c3", 1}
	c1b, c2b, c3b := res{cdsType, "c1", 2}, res{cdsType, "c2", 2}, res{cdsType, "c3", 2}
	c1c := res{cdsType, "c1", 3}
	a, b, x := res{edsType, "a", 1}, res{edsType, "b", 1}, res{edsType, "x", 1}
	a2, b2, a3 := res{edsType, "a", 2}, res{edsType, "b", 2}, res{edsType, "a", 3}
	l1, l2, l2b := res{ldsType, "l1", 1}, res{ldsType, "l2", 1}, res{ldsType, "l2", 2}
	o1, o2 := res{otherType, "o1", 1}, res{otherType, "o2", 1}

	tests := []struct {
		name  string
		steps []step
	}{{
		name: "cds first request on an empty store gets an empty response",
		steps: []step{
			{do: sub(cdsType), want: want(cdsType)},
			{do: ack(cdsType)},
			{apply: []res{c1}, want: want(cdsType, c1)},
		},
	}, {
		name: "cds wildcard response carries every cluster when one changes",
		steps: []step{
			{apply: []res{c1, c2}, do: sub(cdsType), want: want(cdsType, c1, c2)},
			{do: ack(cdsType)},
			{apply: []res{c2b}, want: want(cdsType, c1, c2b)},
			{do: ack(cdsType)},
			{apply: []res{c3}, want: want(cdsType, c1, c2b, c3)},
		},
	}, {
		name: "cds removal sends the remaining clusters, down to none",
		steps: []step{
			{apply: []res{c1, c2}, do: sub(cdsType), want: want(cdsType, c1, c2)},
			{do: ack(cdsType)},
			{remove: refs(cdsType, "c1"), want: want(cdsType, c2)},
			{do: ack(cdsType)},
			{remove: refs(cdsType, "c2"), want: want(cdsType)},
			{do: ack(cdsType)},
			{remove: refs(cdsType, "c2")},
		},
	}, {
		name: "cds by name carries every subscribed cluster and ignores others",
		steps: []step{
			{apply: []res{c1, c2, c3}, do: sub(cdsType, "c1", "c2"), want: want(cdsType, c1, c2)},
			{do: ack(cdsType)},
			{apply: []res{c2b}, want: want(cdsType, c1, c2b)},
			{do: ack(cdsType)},
			{apply: []res{c3b}},
			{remove: refs(cdsType, "c1"), want: want(cdsType, c2b)},
			{do: ack(cdsType)},
			{apply: []res{c1}, want: want(cdsType, c1, c2b)},
		},
	}, {
		name: "cds by name, first request for a missing cluster still answered",
		steps: []step{
			{do: sub(cdsType, "c1"), want: want(cdsType)},
			{do: ack(cdsType)},
			{apply: []res{c2}},
			{apply: []res{c1}, want: want(cdsType, c1)},
		},
	}, {
		name: "lds is full-state too",
		steps: []step{
			{apply: []res{l1, l2}, do: sub(ldsType), want: want(ldsType, l1, l2)},
			{do: ack(ldsType)},
			{apply: []res{l2b}, want: want(ldsType, l1, l2b)},
		},
	}, {
		name: "eds first request with nothing existing gets nothing until it exists",
		steps: []step{
			{do: sub(edsType, "a")},
			{apply: []res{b}},
			{apply: []res{a}, want: want(edsType, a)},
			{do: ack(edsType)},
		},
	}, {
		name: "eds sends only the changed subscribed resources",
		steps: []step{
			{apply: []res{a, b, x}, do: sub(edsType, "a", "b"), want: want(edsType, a, b)},
			{do: ack(edsType)},
			{apply: []res{b2}, want: want(edsType, b2)},
			{do: ack(edsType)},
			{apply: []res{a2, b2}, want: want(edsType, a2)},
			{do: ack(edsType)},
			{apply: []res{res{edsType, "x", 2}}},
			{remove: refs(edsType, "a")},
			{apply: []res{a2}},
			{apply: []res{a3}, want: want(edsType, a3)},
		},
	}, {
		name: "eds wildcard gets every resource, then only changes",
		steps: []step{
			{apply: []res{a, b}, do: sub(edsType), want: want(edsType, a, b)},
			{do: ack(edsType)},
			{apply: []res{x}, want: want(edsType, x)},
			{do: ack(edsType)},
			{remove: refs(edsType, "a")},
		},
	}, {
		name: "unchanged bytes notify nobody",
		steps: []step{
			{apply: []res{a}, do: sub(edsType, "a"), want: want(edsType, a)},
			{do: ack(edsType)},
			{apply: []res{a}},
			{apply: []res{res{edsType, "a", 1}}},
		},
	}, {
		name: "eds nack: the rejected version is not resent, the next one is delivered",
		steps: []step{
			{apply: []res{a}, do: sub(edsType, "a"), want: want(edsType, a)},
			{do: ack(edsType)},
			{apply: []res{a2}, want: want(edsType, a2)},
			{do: nack(edsType)},
			{do: nack(edsType)},
			{apply: []res{a3}, want: want(edsType, a3)},
			{do: ack(edsType)},
		},
	}, {
		name: "cds nack of the very first response is not answered again",
		steps: []step{
			{apply: []res{c1}, do: sub(cdsType), want: want(cdsType, c1)},
			{do: nack(cdsType)},
			{apply: []res{c1b}, want: want(cdsType, c1b)},
			{do: nack(cdsType)},
			{apply: []res{c1c}, want: want(cdsType, c1c)},
		},
	}, {
		name: "unsubscribe then resubscribe resends the unchanged resource",
		steps: []step{
			{apply: []res{a, b}, do: sub(edsType, "a", "b"), want: want(edsType, a, b)},
			{do: ack(edsType)},
			{do: sub(edsType, "a")},
			{apply: []res{b2}},
			{do: sub(edsType, "a", "b"), want: want(edsType, b2)},
			{do: ack(edsType)},
		},
	}, {
		name: "unknown type: no first response, later resources delivered",
		steps: []step{
			{do: sub(otherType)},
			{apply: []res{o1}, want: want(otherType, o1)},
			{do: ack(otherType)},
			{apply: []res{o2}, want: want(otherType, o2)},
		},
	}, {
		name: "unknown type by name",
		steps: []step{
			{apply: []res{o2}, do: sub(otherType, "o1")},
			{apply: []res{o1}, want: want(otherType, o1)},
		},
	}}
	drivers := []struct {
		name string
		new  func(*testing.T, *Store) sotwDriver
	}{
		{"watch", func(t *testing.T, s *Store) sotwDriver { return newSotwClient(t, s) }},
		{"sub", func(t *testing.T, s *Store) sotwDriver { return newSubClient(t, s) }},
	}
	for _, tt := range tests {
		for _, d := range drivers {
			t.Run(d.name+"/"+tt.name, func(t *testing.T) {
				s := New(nil)
				c := d.new(t, s)
				for i, st := range tt.steps {
					var set []Item
					for _, r := range st.apply {
						set = append(set, r.item("src"))
					}
					if len(set) > 0 || len(st.remove) > 0 {
						mustApply(t, s, set, st.remove)
					}
					if st.do != nil {
						st.do(c)
					}
					if st.want == nil {
						c.expectNone()
						continue
					}
					c.expect(st.want.typeURL, st.want.resources)
					if t.Failed() {
						t.Fatalf("step %d failed", i)
					}
				}
			})
		}
	}
}

// deltaStep is one move of a delta scenario.
type deltaStep struct {
	apply  []res
	remove []Ref
	req    *deltaReq
	// want and removed are the next response; wantNone expects none.
	want     []res
	removed  []string
	wantNone bool
}

func TestDeltaWatches(t *testing.T) {
	c1, c2, c2b := res{cdsType, "c1", 1}, res{cdsType, "c2", 1}, res{cdsType, "c2", 2}
	a, b, a2, a3, b2 := res{edsType, "a", 1}, res{edsType, "b", 1}, res{edsType, "a", 2}, res{edsType, "a", 3}, res{edsType, "b", 2}
	version := func(r res) string {
		e, err := newEntry(r.item())
		if err != nil {
			t.Fatal(err)
		}
		return e.version
	}

	tests := []struct {
		name    string
		typeURL string
		steps   []deltaStep
	}{{
		name:    "wildcard first request on an empty store gets one empty response",
		typeURL: cdsType,
		steps: []deltaStep{
			{req: &deltaReq{}},
			{req: &deltaReq{}, wantNone: true},
			{apply: []res{c1}, want: []res{c1}},
		},
	}, {
		name:    "wildcard add, update and remove",
		typeURL: cdsType,
		steps: []deltaStep{
			{apply: []res{c1, c2}, req: &deltaReq{}, want: []res{c1, c2}},
			{req: &deltaReq{}, wantNone: true},
			{apply: []res{c2b}, want: []res{c2b}},
			{req: &deltaReq{}, wantNone: true},
			{remove: refs(cdsType, "c1"), want: nil, removed: []string{"c1"}},
			{req: &deltaReq{}, wantNone: true},
			{remove: refs(cdsType, "c1"), wantNone: true},
			{apply: []res{c1}, remove: refs(cdsType, "c2"), want: []res{c1}, removed: []string{"c2"}},
		},
	}, {
		name:    "by name: subscribe, update, unsubscribe, remove",
		typeURL: edsType,
		steps: []deltaStep{
			{apply: []res{a, b}, req: &deltaReq{subscribe: []string{"a"}}, want: []res{a}},
			{req: &deltaReq{}, wantNone: true},
			{apply: []res{b2}, wantNone: true},
			{apply: []res{a2}, want: []res{a2}},
			{req: &deltaReq{subscribe: []string{"b"}}, want: []res{b2}},
			{req: &deltaReq{unsubscribe: []string{"a"}}, wantNone: true},
			{apply: []res{a3}, wantNone: true},
			{remove: refs(edsType, "b"), removed: []string{"b"}},
			{req: &deltaReq{subscribe: []string{"a"}}, want: []res{a3}},
		},
	}, {
		name:    "by name: first request for a missing resource gets nothing until it exists",
		typeURL: edsType,
		steps: []deltaStep{
			{req: &deltaReq{subscribe: []string{"a"}}, wantNone: true},
			{apply: []res{b}, wantNone: true},
			{apply: []res{a}, want: []res{a}},
		},
	}, {
		name:    "initial versions already current are not resent",
		typeURL: cdsType,
		steps: []deltaStep{
			{apply: []res{c1, c2}},
			{req: &deltaReq{initial: map[string]string{"c1": version(c1), "c2": "stale", "gone": "x"}}, want: []res{c2}, removed: []string{"gone"}},
			{req: &deltaReq{}, wantNone: true},
			{remove: refs(cdsType, "c1"), removed: []string{"c1"}},
		},
	}, {
		name:    "initial versions all current: first wildcard request gets an empty response",
		typeURL: cdsType,
		steps: []deltaStep{
			{apply: []res{c1}},
			{req: &deltaReq{initial: map[string]string{"c1": version(c1)}}},
			{req: &deltaReq{}, wantNone: true},
		},
	}, {
		name:    "nack: the rejected version is not resent, the next one is delivered",
		typeURL: edsType,
		steps: []deltaStep{
			{apply: []res{a}, req: &deltaReq{subscribe: []string{"a"}}, want: []res{a}},
			{req: &deltaReq{}, wantNone: true},
			{apply: []res{a2}, want: []res{a2}},
			{req: &deltaReq{nack: true}, wantNone: true},
			{apply: []res{a3}, want: []res{a3}},
		},
	}, {
		name:    "explicit wildcard: unsubscribing a name it covers resends the resource",
		typeURL: cdsType,
		steps: []deltaStep{
			{apply: []res{c1, c2}, req: &deltaReq{subscribe: []string{"*", "c1"}}, want: []res{c1, c2}},
			{req: &deltaReq{}, wantNone: true},
			{req: &deltaReq{unsubscribe: []string{"c1"}}, want: []res{c1}},
			{req: &deltaReq{unsubscribe: []string{"*"}}, wantNone: true},
			{apply: []res{c2b}, wantNone: true},
		},
	}, {
		name:    "unknown type: no response to the first wildcard request",
		typeURL: otherType,
		steps: []deltaStep{
			{req: &deltaReq{}, wantNone: true},
			{apply: []res{{otherType, "o", 1}}, want: []res{{otherType, "o", 1}}},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(nil)
			c := newDeltaClient(t, s)
			for i, st := range tt.steps {
				var set []Item
				for _, r := range st.apply {
					set = append(set, r.item("src"))
				}
				if len(set) > 0 || len(st.remove) > 0 {
					mustApply(t, s, set, st.remove)
				}
				if st.req != nil {
					c.request(tt.typeURL, *st.req)
				}
				if st.wantNone {
					c.expectNone()
					continue
				}
				if st.want == nil && st.removed == nil && st.req == nil {
					c.expectNone()
					continue
				}
				c.expect(tt.typeURL, msgs(st.want...), st.removed)
				if t.Failed() {
					t.Fatalf("step %d failed", i)
				}
			}
		})
	}
}

// TestADSOrder checks that one Apply touching every type reaches an ADS
// stream as CDS, EDS, LDS, RDS, then other types, whatever the order of the
// items.
func TestADSOrder(t *testing.T) {
	s := New(nil)
	c := newSotwClient(t, s)
	initial := []res{{cdsType, "c", 1}, {edsType, "c", 1}, {ldsType, "l", 1}, {rdsType, "r", 1}, {otherType, "o", 1}}
	mustApply(t, s, items(initial...), nil)
	c.subscribe(cdsType, nil)
	c.expect(cdsType, msgs(initial[0]))
	c.subscribe(edsType, []string{"c"})
	c.expect(edsType, msgs(initial[1]))
	c.subscribe(ldsType, nil)
	c.expect(ldsType, msgs(initial[2]))
	c.subscribe(rdsType, []string{"r"})
	c.expect(rdsType, msgs(initial[3]))
	c.subscribe(otherType, nil)
	c.expect(otherType, msgs(initial[4]))
	for _, typeURL := range []string{cdsType, edsType, ldsType, rdsType, otherType} {
		c.ack(typeURL)
	}
	c.expectNone()

	for rev := 2; rev < 6; rev++ {
		next := []res{{otherType, "o", rev}, {rdsType, "r", rev}, {ldsType, "l", rev}, {edsType, "c", rev}, {cdsType, "c", rev}}
		mustApply(t, s, items(next...), nil)
		for i := len(next) - 1; i >= 0; i-- {
			c.expect(next[i].typeURL, msgs(next[i]))
		}
		c.expectNone()
		for _, r := range next {
			c.ack(r.typeURL)
		}
	}
}

func TestCancel(t *testing.T) {
	s := New(nil)
	ch := make(chan cachev3.Response, 1)
	newReq := func(names ...string) (*discovery.DiscoveryRequest, stream.Subscription) {
		return &discovery.DiscoveryRequest{TypeUrl: edsType, ResourceNames: names, ResponseNonce: "1"},
			stream.NewSotwSubscription(names, true)
	}

	req, sub := newReq("a", "b")
	cancelNamed, err := s.CreateWatch(req, sub, ch)
	if err != nil {
		t.Fatal(err)
	}
	req, sub = newReq()
	cancelWild, err := s.CreateWatch(req, sub, ch)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.watchCount(edsType); got != 2 {
		t.Fatalf("watches = %d, want 2", got)
	}
	for range 3 {
		cancelNamed()
		cancelWild()
	}
	if got := s.watchCount(edsType); got != 0 {
		t.Fatalf("watches after cancel = %d, want 0", got)
	}
	if len(s.types) != 0 {
		t.Errorf("types after cancelling every watch of an empty type: %d, want 0", len(s.types))
	}
	mustApply(t, s, items(res{edsType, "a", 1}, res{edsType, "c", 1}), nil)
	if len(ch) != 0 {
		t.Fatal("cancelled watch answered")
	}

	// A fired watch stays harmless in the index until cancelled.
	req, sub = newReq("a", "b")
	sub.SetReturnedResources(map[string]string{"a": s.mustLookup(t, edsType, "a").Version})
	cancelFired, err := s.CreateWatch(req, sub, ch)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, items(res{edsType, "b", 1}), nil)
	if len(ch) != 1 {
		t.Fatalf("responses = %d, want 1", len(ch))
	}
	<-ch
	mustApply(t, s, items(res{edsType, "a", 2}, res{edsType, "b", 2}), nil)
	if len(ch) != 0 {
		t.Fatal("fired watch answered twice")
	}
	cancelFired()
	cancelFired()
	if got := s.watchCount(edsType); got != 0 {
		t.Fatalf("watches after cancel = %d, want 0", got)
	}
	if ts := s.types[edsType]; len(ts.byName) != 0 || len(ts.wildcard.entries) != 0 {
		t.Errorf("index holds %d names, %d wildcard watches after cancel, want 0", len(ts.byName), len(ts.wildcard.entries))
	}

	// A watch answered at once needs no cancel, but calling it is fine.
	req, sub = newReq("a")
	cancelNow, err := s.CreateWatch(req, sub, ch)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch) != 1 {
		t.Fatal("no immediate response")
	}
	cancelNow()
	cancelNow()
}

// watchCount counts the registered watches of a type.
func (s *Store) watchCount(typeURL string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if ts := s.types[typeURL]; ts != nil {
		return ts.watches
	}
	return 0
}

func (s *Store) mustLookup(t *testing.T, typeURL, name string) Entry {
	t.Helper()
	e, ok := s.Lookup(typeURL, name)
	if !ok {
		t.Fatalf("no %s %s", typeURL, name)
	}
	return e
}

// TestIndexedNotification checks that a change reaches only the watches
// subscribed to it: watches on other names are neither answered nor
// visited.
func TestIndexedNotification(t *testing.T) {
	s := New(nil)
	const n = 50
	set := make([]Item, n)
	chans := make([]chan cachev3.Response, n)
	var cancels []func()
	for i := range n {
		name := fmt.Sprintf("n%02d", i)
		set[i] = res{edsType, name, 1}.item()
	}
	mustApply(t, s, set, nil)
	for i := range n {
		chans[i] = make(chan cachev3.Response, 1)
		name := set[i].Name
		sub := stream.NewSotwSubscription([]string{name}, true)
		sub.SetReturnedResources(map[string]string{name: s.mustLookup(t, edsType, name).Version})
		cancel, err := s.CreateWatch(&discovery.DiscoveryRequest{TypeUrl: edsType, ResourceNames: []string{name}, ResponseNonce: "1"}, sub, chans[i])
		if err != nil {
			t.Fatal(err)
		}
		cancels = append(cancels, cancel)
	}
	mustApply(t, s, items(res{edsType, set[7].Name, 2}), nil)
	for i, ch := range chans {
		if got, want := len(ch), map[bool]int{true: 1, false: 0}[i == 7]; got != want {
			t.Errorf("watch %d: %d responses, want %d", i, got, want)
		}
	}
	s.mu.RLock()
	idx := s.types[edsType].byName[set[7].Name]
	if len(idx.entries) != 1 || idx.entries[0].w.state != fired {
		t.Errorf("index of the changed name: %d entries, want 1 fired watch", len(idx.entries))
	}
	s.mu.RUnlock()
	for _, cancel := range cancels {
		cancel()
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if n := len(s.types[edsType].byName); n != 0 {
		t.Errorf("%d names indexed after every watch was cancelled", n)
	}
}

// TestSharedBytes checks that responses share resource bytes and that each
// GetDiscoveryResponse call returns a new message.
func TestSharedBytes(t *testing.T) {
	s := New(nil)
	mustApply(t, s, items(res{cdsType, "c1", 1}, res{edsType, "c1", 1}), nil)
	get := func(typeURL string, names []string) (cachev3.Response, *discovery.DiscoveryResponse) {
		ch := make(chan cachev3.Response, 1)
		if _, err := s.CreateWatch(&discovery.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names}, stream.NewSotwSubscription(names, true), ch); err != nil {
			t.Fatal(err)
		}
		r := <-ch
		out, err := r.GetDiscoveryResponse()
		if err != nil {
			t.Fatal(err)
		}
		return r, out
	}
	r1, out1 := get(cdsType, nil)
	_, out2 := get(cdsType, nil)
	_, out3 := get(cdsType, []string{"c1"})
	if out1.GetResources()[0] != out2.GetResources()[0] || out1.GetResources()[0] != out3.GetResources()[0] {
		t.Error("cluster bytes not shared between responses")
	}
	again, _ := r1.GetDiscoveryResponse()
	if again == out1 {
		t.Error("GetDiscoveryResponse returned the same message twice")
	}
	again.Nonce = "7"
	if out1.GetNonce() == "7" {
		t.Error("nonce leaked between response messages")
	}
	ret := r1.GetReturnedResources()
	ret["c1"] = "mutated"
	_, out4 := get(cdsType, nil)
	if out4.GetResources()[0] != out1.GetResources()[0] {
		t.Error("cluster bytes not shared after a returned map was modified")
	}
	if e := s.mustLookup(t, cdsType, "c1"); e.Version == "mutated" {
		t.Error("returned map aliases store state")
	}

	dch := make(chan cachev3.DeltaResponse, 1)
	if _, err := s.CreateDeltaWatch(&discovery.DeltaDiscoveryRequest{TypeUrl: cdsType}, stream.NewDeltaSubscription(nil, nil, nil, true), dch); err != nil {
		t.Fatal(err)
	}
	d := <-dch
	dout, err := d.GetDeltaDiscoveryResponse()
	if err != nil {
		t.Fatal(err)
	}
	if dout.GetResources()[0].GetResource() != out1.GetResources()[0] {
		t.Error("delta response does not share the SotW bytes")
	}
	if again, _ := d.GetDeltaDiscoveryResponse(); again == dout {
		t.Error("GetDeltaDiscoveryResponse returned the same message twice")
	}
}

// TestReturnedMapUpdatedOnSend checks that the store changes a subscription's
// returned map only when the server sends the response (GetReturnedResources),
// never while a watch is pending or for a response the server drops, and that
// it updates the map in place rather than copying it.
func TestReturnedMapUpdatedOnSend(t *testing.T) {
	s := New(nil)
	mustApply(t, s, items(res{edsType, "a", 1}, res{edsType, "b", 1}), nil)
	returned := map[string]string{"a": "old", "gone": "v"}
	sub := stream.NewSotwSubscription([]string{"a", "b"}, true)
	sub.SetReturnedResources(returned)
	ch := make(chan cachev3.Response, 1)
	if _, err := s.CreateWatch(&discovery.DiscoveryRequest{TypeUrl: edsType, ResourceNames: []string{"a", "b"}, ResponseNonce: "1"}, sub, ch); err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if _, err := r.GetDiscoveryResponse(); err != nil {
		t.Fatal(err)
	}
	if len(returned) != 2 || returned["a"] != "old" {
		t.Fatalf("subscription map changed before the response was sent: %v", returned)
	}
	got := r.GetReturnedResources()
	if got["a"] != s.mustLookup(t, edsType, "a").Version || got["b"] != s.mustLookup(t, edsType, "b").Version || got["gone"] != "v" {
		t.Errorf("returned = %v", got)
	}
	got["probe"] = "x"
	if returned["probe"] != "x" {
		t.Error("returned map was copied, not updated in place")
	}
	if again := r.GetReturnedResources(); len(again) != len(got) {
		t.Error("GetReturnedResources is not idempotent")
	}
}

// TestFullChannel checks that a watch whose channel has no room neither
// blocks Apply nor goes unreported.
func TestFullChannel(t *testing.T) {
	var logs bytes.Buffer
	s := New(slog.New(slog.NewTextHandler(&logs, nil)))
	ch := make(chan cachev3.Response) // no room at all
	req := &discovery.DiscoveryRequest{Node: &corev3.Node{Id: "n1"}, TypeUrl: cdsType, ResponseNonce: "1"}
	cancel, err := s.CreateWatch(req, stream.NewSotwSubscription(nil, true), ch)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	mustApply(t, s, items(res{cdsType, "c1", 1}), nil)
	if !bytes.Contains(logs.Bytes(), []byte("response dropped")) || !bytes.Contains(logs.Bytes(), []byte("node=n1")) {
		t.Errorf("log = %q, want a dropped-response line naming the node", logs.String())
	}
}

// TestRegisterRace checks that a change applied between a watch's check and
// its registration is not lost.
func TestRegisterRace(t *testing.T) {
	s := New(nil)
	ch := make(chan cachev3.Response, 1)
	w := &watch{req: &discovery.DiscoveryRequest{TypeUrl: edsType, ResponseNonce: "1"}, sotwCh: ch,
		subscribed: map[string]struct{}{"a": {}}, returned: map[string]string{}}
	calls := 0
	cancel, err := s.createWatch(w, func(ts *typeState) bool {
		calls++
		if calls == 1 {
			// An Apply lands between the read-locked check and the
			// registration.
			s.mu.RUnlock()
			mustApply(t, s, items(res{edsType, "a", 1}), nil)
			s.mu.RLock()
			return false
		}
		r := s.sotwInitial(ts, edsType, w, false)
		if r == nil {
			return false
		}
		s.sendSotw(w, r)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	if calls != 2 || len(ch) != 1 {
		t.Errorf("checks = %d, responses = %d; want 2 and 1", calls, len(ch))
	}
}

// TestIndexConsistency registers and cancels watches over overlapping names
// in a scrambled order and checks after each step that every index entry
// and every watch slot point at each other.
func TestIndexConsistency(t *testing.T) {
	s := New(nil)
	names := []string{"a", "b", "c", "d", "e"}
	type live struct {
		cancel func()
		w      *watch
	}
	var watches []live
	check := func(step string) {
		t.Helper()
		s.mu.RLock()
		defer s.mu.RUnlock()
		ts := s.types[edsType]
		if ts == nil {
			if len(watches) != 0 {
				t.Fatalf("%s: type dropped with %d watches", step, len(watches))
			}
			return
		}
		count := map[*watch]int{}
		for _, idx := range append([]*nameIndex{ts.wildcard}, mapValues(ts.byName)...) {
			if idx != ts.wildcard && len(idx.entries) == 0 {
				t.Errorf("%s: empty index for %q kept", step, idx.name)
			}
			for pos, ie := range idx.entries {
				sl := ie.w.slots[ie.slot]
				if sl.idx != idx || sl.pos != pos {
					t.Fatalf("%s: entry %d of %q points to slot %d, which points back to %p/%d", step, pos, idx.name, ie.slot, sl.idx, sl.pos)
				}
				count[ie.w]++
			}
		}
		if len(count) != len(watches) || ts.watches != len(watches) {
			t.Fatalf("%s: %d watches indexed, counter %d, want %d", step, len(count), ts.watches, len(watches))
		}
		for _, lw := range watches {
			if count[lw.w] != len(lw.w.slots) {
				t.Fatalf("%s: watch in %d indexes, has %d slots", step, count[lw.w], len(lw.w.slots))
			}
		}
	}
	for i := range 40 {
		var sub stream.Subscription
		if i%7 == 0 {
			sub = stream.NewSotwSubscription(nil, true)
		} else {
			sub = stream.NewSotwSubscription([]string{names[i%5], names[(i*3)%5], names[(i+2)%5]}, true)
		}
		req := &discovery.DiscoveryRequest{TypeUrl: edsType, ResourceNames: slices.Collect(maps.Keys(sub.SubscribedResources())), ResponseNonce: "1"}
		w := &watch{req: req, sotwCh: make(chan cachev3.Response, 1), wildcard: sub.IsWildcard(), subscribed: sub.SubscribedResources(), returned: sub.ReturnedResources()}
		cancel, err := s.createWatch(w, func(*typeState) bool { return false })
		if err != nil {
			t.Fatal(err)
		}
		watches = append(watches, live{cancel, w})
		check(fmt.Sprintf("add %d", i))
		if i%3 == 2 {
			j := (i * 5) % len(watches)
			watches[j].cancel()
			watches = slices.Delete(watches, j, j+1)
			check(fmt.Sprintf("cancel after %d", i))
		}
	}
	for len(watches) > 0 {
		j := (len(watches)*7 + 3) % len(watches)
		watches[j].cancel()
		watches = slices.Delete(watches, j, j+1)
		check(fmt.Sprintf("drain %d", len(watches)))
	}
	if len(s.types) != 0 {
		t.Errorf("%d types left after every watch of an empty type was cancelled", len(s.types))
	}
}

func mapValues[K comparable, V any](m map[K]V) []V {
	return slices.Collect(maps.Values(m))
}
