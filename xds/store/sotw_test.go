package store

import (
	"fmt"
	"slices"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// subClient plays the xds package's SotW stream over Subs: one per type,
// updated when a request changes the names, armed by every later request,
// taken from in type order.
type subClient struct {
	t     *testing.T
	s     *Store
	types []*subType
}

type subType struct {
	url      string
	sub      *Sub
	names    []string
	legacy   bool
	wildcard bool
}

func newSubClient(t *testing.T, s *Store) *subClient {
	c := &subClient{t: t, s: s}
	t.Cleanup(func() {
		for _, st := range c.types {
			st.sub.Close()
		}
	})
	return c
}

func (st *subType) set(names []string) {
	st.names = names
	if st.legacy && len(names) == 0 {
		st.wildcard = true
		return
	}
	st.legacy = false
	st.wildcard = slices.Contains(names, "*")
}

func (c *subClient) subscribe(typeURL string, names []string) { c.send(typeURL, names, false) }

func (c *subClient) ack(typeURL string) { c.send(typeURL, c.find(typeURL).names, false) }

func (c *subClient) nack(typeURL string) { c.send(typeURL, c.find(typeURL).names, true) }

func (c *subClient) find(typeURL string) *subType {
	for _, st := range c.types {
		if st.url == typeURL {
			return st
		}
	}
	return nil
}

func (c *subClient) send(typeURL string, names []string, nack bool) {
	st := c.find(typeURL)
	if st == nil {
		st = &subType{url: typeURL, legacy: true}
		st.set(names)
		st.sub = c.s.Subscribe(typeURL, st.wildcard, names, func() {})
		c.types = append(c.types, st)
		slices.SortFunc(c.types, func(a, b *subType) int { return CompareTypes(a.url, b.url) })
		return
	}
	if !slices.Equal(names, st.names) {
		st.set(names)
		st.sub.Update(st.wildcard, names)
	}
	st.sub.Arm(nack)
}

// take returns the next response in type order, checking that its body
// encodes its version and resources.
func (c *subClient) take() *SotwResponse {
	c.t.Helper()
	for _, st := range c.types {
		r := st.sub.Take()
		if r == nil {
			continue
		}
		var got discovery.DiscoveryResponse
		if err := proto.Unmarshal(r.Body, &got); err != nil {
			c.t.Fatalf("response body: %v", err)
		}
		want := &discovery.DiscoveryResponse{VersionInfo: r.Version, Resources: r.Resources}
		if diff := cmp.Diff(want, &got, protocmp.Transform()); diff != "" {
			c.t.Errorf("response body (-fields +body):\n%s", diff)
		}
		if b, err := (proto.MarshalOptions{Deterministic: true}).Marshal(want); err != nil || string(b) != string(r.Body) {
			c.t.Errorf("response body is not the deterministic encoding of its fields (err %v)", err)
		}
		if v := c.s.TypeVersion(r.TypeURL); r.Version != v {
			c.t.Errorf("%s response version %q, type version %q", r.TypeURL, r.Version, v)
		}
		return r
	}
	return nil
}

func (c *subClient) expect(typeURL string, want []proto.Message) {
	c.t.Helper()
	r := c.take()
	if r == nil {
		c.t.Fatal("no response")
	}
	if r.TypeURL != typeURL {
		c.t.Fatalf("response of %s, want %s", r.TypeURL, typeURL)
	}
	if diff := cmp.Diff(want, unpack(c.t, r.Resources), protocmp.Transform(), cmpEmpty); diff != "" {
		c.t.Errorf("%s response resources (-want +got):\n%s", typeURL, diff)
	}
}

func (c *subClient) expectNone() {
	c.t.Helper()
	if r := c.take(); r != nil {
		c.t.Fatalf("unexpected %s response with %d resources", r.TypeURL, len(r.Resources))
	}
}

// Every Sub concerned by all of one Apply, and only by it, is sent the
// same bytes; so is every Sub sent a whole generation. A Sub concerned by
// part of it gets bytes of its own.
func TestSubSharedBodies(t *testing.T) {
	s := New(nil)
	var names []string
	for i := range 10 {
		names = append(names, fmt.Sprintf("e%d", i))
		mustApply(t, s, items(res{edsType, names[i], 1}), nil)
	}
	all := [3]*Sub{
		s.Subscribe(edsType, false, names, func() {}),
		s.Subscribe(edsType, false, names, func() {}),
		s.Subscribe(edsType, true, nil, func() {}),
	}
	some := s.Subscribe(edsType, false, names[:1], func() {})
	defer func() {
		for _, sub := range append(all[:], some) {
			sub.Close()
		}
	}()
	first := all[0].Take()
	for _, sub := range all[1:] {
		if r := sub.Take(); &r.Body[0] != &first.Body[0] {
			t.Error("first responses of subscriptions to everything do not share their bytes")
		}
	}
	if r := some.Take(); len(r.Resources) != 1 || &r.Body[0] == &first.Body[0] {
		t.Errorf("a subscription to one name got %d resources", len(r.Resources))
	}
	for _, sub := range append(all[:], some) {
		sub.Arm(false)
	}

	mustApply(t, s, items(res{edsType, "e0", 2}, res{edsType, "e1", 2}), nil)
	first = all[0].Take()
	if len(first.Resources) != 2 {
		t.Fatalf("%d resources, want the 2 changed", len(first.Resources))
	}
	for _, sub := range all[1:] {
		if r := sub.Take(); &r.Body[0] != &first.Body[0] {
			t.Error("responses to one change do not share their bytes")
		}
	}
	if r := some.Take(); len(r.Resources) != 1 || &r.Body[0] == &first.Body[0] {
		t.Errorf("the subscription to e0 got %d resources, or another's bytes", len(r.Resources))
	}
}

// An ACK that does not change the subscription costs nothing, whatever the
// number of names: arming a Sub with nothing pending allocates nothing and
// does not touch the indexes.
func TestSubArmIsFree(t *testing.T) {
	s := New(nil)
	var names []string
	var set []Item
	for i := range 1000 {
		names = append(names, fmt.Sprintf("c%04d", i))
		set = append(set, res{edsType, names[i], 1}.item("src"))
	}
	mustApply(t, s, set, nil)
	sub := s.Subscribe(edsType, false, names, func() {})
	defer sub.Close()
	if r := sub.Take(); r == nil || len(r.Resources) != 1000 {
		t.Fatal("no first response with every resource")
	}
	joined := sub.set
	allocs := testing.AllocsPerRun(100, func() {
		sub.Arm(false)
		if sub.Take() != nil {
			t.Fatal("a response with nothing changed")
		}
	})
	if allocs != 0 {
		t.Errorf("an ACK allocates %.0f times", allocs)
	}
	if sub.set != joined {
		t.Error("an ACK re-indexed the subscription")
	}
}

// A partial type does not send again a version the client rejected, even
// when the resource flaps back to it before the client is sent anything.
func TestSubNACKedVersionNotResent(t *testing.T) {
	s := New(nil)
	c := newSubClient(t, s)
	a1, a2, a3 := res{edsType, "a", 1}, res{edsType, "a", 2}, res{edsType, "a", 3}
	mustApply(t, s, items(a1), nil)
	c.subscribe(edsType, []string{"a"})
	c.expect(edsType, msgs(a1))
	c.ack(edsType)
	mustApply(t, s, items(a2), nil)
	c.expect(edsType, msgs(a2))
	mustApply(t, s, items(a3), nil)
	mustApply(t, s, items(a2), nil)
	c.nack(edsType)
	c.expectNone()
	mustApply(t, s, items(a3), nil)
	c.expect(edsType, msgs(a3))
}

// Subs subscribed to the same names, in any order, share one subscription
// set, indexed once; the set lives as long as one of them does.
func TestSubsShareSets(t *testing.T) {
	s := New(nil)
	mustApply(t, s, items(res{edsType, "a", 1}, res{edsType, "b", 1}), nil)
	x := s.Subscribe(edsType, false, []string{"a", "b"}, func() {})
	y := s.Subscribe(edsType, false, []string{"b", "a"}, func() {})
	z := s.Subscribe(edsType, false, []string{"a"}, func() {})
	defer z.Close()
	if x.set != y.set || x.set == z.set {
		t.Fatal("equal subscriptions do not share a set, or different ones do")
	}
	ts := s.types[edsType]
	if n := len(ts.byName["a"].entries); n != 2 {
		t.Errorf("name a indexed %d times, want once per set (2)", n)
	}
	x.Close()
	for _, sub := range []*Sub{y, z} {
		sub.Take()
		sub.Arm(false)
	}
	mustApply(t, s, items(res{edsType, "a", 2}), nil)
	if r := y.Take(); r == nil || len(r.Resources) != 1 {
		t.Error("the set's remaining member was not notified")
	}
	y.Update(false, []string{"a"})
	if y.set != z.set || len(ts.sets) != 1 || ts.byName["b"] != nil {
		t.Errorf("after y moved to z's names: %d sets, b still indexed: %v", len(ts.sets), ts.byName["b"] != nil)
	}
	y.Close()
}

func TestSetKey(t *testing.T) {
	distinct := [][]string{{"a\x00b"}, {"a", "b"}, {"ab"}, {}, {"*"}}
	seen := map[string]int{}
	for i, names := range distinct {
		k := setKey(false, names)
		if j, ok := seen[k]; ok {
			t.Errorf("names %q and %q share a key", distinct[j], names)
		}
		seen[k] = i
	}
	if setKey(false, []string{"b", "a", "b"}) != setKey(false, []string{"a", "b"}) {
		t.Error("the same names in another order, or repeated, have another key")
	}
	if setKey(true, nil) == setKey(false, []string{"*"}) {
		t.Error("a wildcard subscription has the key of a named one")
	}
}
