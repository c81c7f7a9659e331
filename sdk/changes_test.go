package sdk_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/xdsbridge/xdsbridge/sdk"
)

func TestEndpointEqual(t *testing.T) {
	base := sdk.Endpoint{
		Address: "10.0.0.1", Port: 80, Weight: 2, Health: sdk.Healthy,
		Locality: sdk.Locality{Region: "r", Zone: "z", SubZone: "s"}, Priority: 1,
		Metadata: map[string]any{"version": "v1", "canary": true, "tags": []any{"a", 1.0}, "nested": map[string]any{"k": nil}},
		Hostname: "a.example",
	}
	// Each edit makes an endpoint differ from base.
	edits := map[string]func(e *sdk.Endpoint){
		"address":        func(e *sdk.Endpoint) { e.Address = "10.0.0.2" },
		"port":           func(e *sdk.Endpoint) { e.Port = 81 },
		"weight":         func(e *sdk.Endpoint) { e.Weight = 3 },
		"health":         func(e *sdk.Endpoint) { e.Health = sdk.Unhealthy },
		"region":         func(e *sdk.Endpoint) { e.Locality.Region = "r2" },
		"zone":           func(e *sdk.Endpoint) { e.Locality.Zone = "z2" },
		"sub-zone":       func(e *sdk.Endpoint) { e.Locality.SubZone = "s2" },
		"priority":       func(e *sdk.Endpoint) { e.Priority = 0 },
		"hostname":       func(e *sdk.Endpoint) { e.Hostname = "b.example" },
		"metadata value": func(e *sdk.Endpoint) { e.Metadata = map[string]any{"version": "v2"} },
		"metadata key":   func(e *sdk.Endpoint) { e.Metadata = map[string]any{"release": "v1"} },
		"no metadata":    func(e *sdk.Endpoint) { e.Metadata = nil },
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			e := base
			edit(&e)
			if e.Equal(&base) || base.Equal(&e) {
				t.Errorf("%+v equals %+v", e, base)
			}
		})
	}

	// Equal values, built apart, are equal: metadata included.
	same := base
	same.Metadata = map[string]any{"version": "v1", "canary": true, "tags": []any{"a", 1.0}, "nested": map[string]any{"k": nil}}
	if !same.Equal(&base) {
		t.Error("equal endpoints with metadata differ")
	}
	a, b := sdk.Endpoint{Address: "10.0.0.1", Port: 80}, sdk.Endpoint{Address: "10.0.0.1", Port: 80, Metadata: map[string]any{}}
	if !a.Equal(&b) || !b.Equal(&a) {
		t.Error("nil and empty metadata differ")
	}
}

func TestClusterEqual(t *testing.T) {
	ep := func(port uint32) sdk.Endpoint { return sdk.Endpoint{Address: "10.0.0.1", Port: port} }
	base := sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{ep(80), ep(81)}, Overlay: []byte{1}}
	tests := []struct {
		name  string
		other sdk.Cluster
		want  bool
	}{
		{"same", sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{ep(80), ep(81)}, Overlay: []byte{1}}, true},
		{"name", sdk.Cluster{Name: "b", Endpoints: []sdk.Endpoint{ep(80), ep(81)}, Overlay: []byte{1}}, false},
		{"overlay", sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{ep(80), ep(81)}, Overlay: []byte{2}}, false},
		{"no overlay", sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{ep(80), ep(81)}}, false},
		{"endpoint", sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{ep(80), ep(82)}, Overlay: []byte{1}}, false},
		{"order", sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{ep(81), ep(80)}, Overlay: []byte{1}}, false},
		{"fewer", sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{ep(80)}, Overlay: []byte{1}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := base.Equal(&tt.other); got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
		})
	}
	empty, none := sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{}}, sdk.Cluster{Name: "a"}
	if !empty.Equal(&none) {
		t.Error("nil and empty endpoints differ")
	}
}

func TestChangesUpdate(t *testing.T) {
	a1 := sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{{Address: "10.0.0.1", Port: 80}}}
	a2 := sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{{Address: "10.0.0.1", Port: 80, Weight: 3}}}
	a3 := sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{{Address: "10.0.0.1", Port: 80, Health: sdk.Unhealthy}}}
	a4 := sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{{Address: "10.0.0.1", Port: 80, Locality: sdk.Locality{Zone: "z2"}}}}
	a5 := sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{{Address: "10.0.0.1", Port: 80, Metadata: map[string]any{"v": "1"}}}}
	a6 := sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{{Address: "10.0.0.1", Port: 80, Metadata: map[string]any{"v": "2"}}}}
	b := sdk.Cluster{Name: "b"}
	c := sdk.Cluster{Name: "c", Endpoints: []sdk.Endpoint{{Address: "10.0.0.3", Port: 80}}}
	s := func(cs ...sdk.Cluster) []sdk.Cluster { return cs }
	tests := []struct {
		name        string
		prev, next  []sdk.Cluster
		wantUpsert  []string
		wantRemoved []string
	}{
		{name: "nothing", prev: s(), next: s()},
		{name: "unchanged", prev: s(a1, b, c), next: s(a1, b, c)},
		{name: "added", prev: s(a1), next: s(a1, b, c), wantUpsert: []string{"b", "c"}},
		{name: "removed", prev: s(a1, b, c), next: s(b), wantRemoved: []string{"a", "c"}},
		{name: "weight changed", prev: s(a1, b), next: s(a2, b), wantUpsert: []string{"a"}},
		{name: "health changed", prev: s(a1, b), next: s(a3, b), wantUpsert: []string{"a"}},
		{name: "zone changed", prev: s(a1, b), next: s(a4, b), wantUpsert: []string{"a"}},
		{name: "metadata unchanged", prev: s(a5, b), next: s(a5, b)},
		{name: "metadata changed", prev: s(a5, b), next: s(a6, b), wantUpsert: []string{"a"}},
		{name: "endpoint gone", prev: s(c), next: s(sdk.Cluster{Name: "c"}), wantUpsert: []string{"c"}},
		{name: "all at once", prev: s(a1, b), next: s(a2, c), wantUpsert: []string{"a", "c"}, wantRemoved: []string{"b"}},
		{name: "from empty", prev: s(), next: s(a1, c), wantUpsert: []string{"a", "c"}},
		{name: "to empty", prev: s(c, a1), next: s(), wantRemoved: []string{"a", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ch sdk.Changes
			first, ok := ch.Update(tt.prev)
			if !ok || !first.Full || !reflect.DeepEqual(first.Clusters, tt.prev) {
				t.Fatalf("first Update = %+v, %v; want a full state of prev", first, ok)
			}
			ch.Sent(first)

			u, ok := ch.Update(tt.next)
			var names []string
			for _, c := range u.Clusters {
				names = append(names, c.Name)
				if i := slices.IndexFunc(tt.next, func(n sdk.Cluster) bool { return n.Name == c.Name }); i < 0 || !reflect.DeepEqual(c, tt.next[i]) {
					t.Errorf("upserted %+v; want next's", c)
				}
			}
			if u.Full || !slices.Equal(names, tt.wantUpsert) || !slices.Equal(u.RemovedClusters, tt.wantRemoved) {
				t.Fatalf("Update = full %v, upsert %v, remove %v; want upsert %v, remove %v", u.Full, names, u.RemovedClusters, tt.wantUpsert, tt.wantRemoved)
			}
			if want := len(tt.wantUpsert)+len(tt.wantRemoved) > 0; ok != want {
				t.Errorf("ok = %v, want %v", ok, want)
			}

			// Once the host has it, the same state is no change.
			ch.Sent(u)
			if again, ok := ch.Update(tt.next); ok {
				t.Errorf("after Sent, Update(next) = %+v; want nothing", again)
			}
		})
	}
}

// TestChangesNotSent: an update never recorded as sent is computed again,
// and Reset makes the next one full.
func TestChangesNotSent(t *testing.T) {
	a := sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{{Address: "10.0.0.1", Port: 80}}}
	a2 := sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{{Address: "10.0.0.2", Port: 80}}}
	b := sdk.Cluster{Name: "b"}
	var ch sdk.Changes
	if u, _ := ch.Update([]sdk.Cluster{a}); !u.Full {
		t.Fatalf("first update %+v is not full", u)
	}
	if u, _ := ch.Update([]sdk.Cluster{a}); !u.Full {
		t.Fatalf("first update, not sent, then %+v: not full", u)
	}
	ch.Sent(sdk.Update{Full: true, Clusters: []sdk.Cluster{a, b}})

	for range 2 {
		u, ok := ch.Update([]sdk.Cluster{a2})
		if !ok || len(u.Clusters) != 1 || u.Clusters[0].Name != "a" || !slices.Equal(u.RemovedClusters, []string{"b"}) {
			t.Fatalf("Update = %+v; want a upserted, b removed", u)
		}
	}

	// Change for the clusters a source knows may have changed.
	var u sdk.Update
	ch.Change(&u, "a", &a)
	ch.Change(&u, "b", nil)
	ch.Change(&u, "c", nil)
	ch.Change(&u, "d", &sdk.Cluster{Name: "d"})
	if len(u.Clusters) != 1 || u.Clusters[0].Name != "d" || !slices.Equal(u.RemovedClusters, []string{"b"}) {
		t.Fatalf("Change = %+v; want d upserted, b removed", u)
	}
	ch.Sent(u)
	if u, ok := ch.Update([]sdk.Cluster{a, {Name: "d"}}); ok {
		t.Fatalf("Update after Sent = %+v; want nothing", u)
	}

	ch.Reset()
	if u, ok := ch.Update([]sdk.Cluster{a}); !ok || !u.Full {
		t.Fatalf("Update after Reset = %+v; want full", u)
	}
}
