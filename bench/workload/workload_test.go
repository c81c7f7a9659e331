package workload

import (
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/xds/translate"
)

func TestNames(t *testing.T) {
	for _, r := range []Ref{Regular(0), Regular(42), Regular(9_999_999), {Index: 7, Owner: 0}, {Index: 1234, Owner: 999}} {
		name := r.Name()
		got, ok := ParseName([]byte(name))
		if !ok || got != r {
			t.Errorf("ParseName(%q) = %+v, %v; want %+v", name, got, ok, r)
		}
	}
	if Regular(42).Name() != "c0000042" || (Ref{Index: 3, Owner: 7}).Name() != "s0000003-7" {
		t.Errorf("names: %s %s", Regular(42).Name(), Ref{Index: 3, Owner: 7}.Name())
	}
	for _, bad := range []string{"", "c", "x0001", "c12a", "s0001", "s0001-", "s0001-x", "c0001-2"} {
		if _, ok := ParseName([]byte(bad)); ok {
			t.Errorf("ParseName(%q) accepted", bad)
		}
	}
}

func TestSubscribed(t *testing.T) {
	n := 0
	for c := range int32(100) {
		for i := range int32(100) {
			if Subscribed(c, Regular(i), 100) {
				n++
			}
		}
	}
	if n < 800 || n > 1200 {
		t.Errorf("10%% share: %d of 10000 subscriptions", n)
	}
	if !Subscribed(3, Regular(5), 1000) || !Subscribed(3, Ref{Index: 9, Owner: 3}, 0) || Subscribed(4, Ref{Index: 9, Owner: 3}, 1000) {
		t.Error("full share or solo ownership wrong")
	}
	if Subscribed(1, Regular(2), 100) != Subscribed(1, Regular(2), 100) {
		t.Error("not deterministic")
	}
}

func TestMarkers(t *testing.T) {
	var got [][2]uint32
	FindMarkers([]byte("…xbm-12-345…xbm-x…xbm-7-…"+Marker(4_000_000_000, 9)+"tail"), func(seq uint32, idx int32) {
		got = append(got, [2]uint32{seq, uint32(idx)})
	})
	if len(got) != 2 || got[0] != [2]uint32{12, 345} || got[1] != [2]uint32{4_000_000_000, 9} {
		t.Errorf("markers %v", got)
	}
}

// The marker survives translation, in the proto bytes and in JSON.
func TestMarkerInResource(t *testing.T) {
	var m Model
	m.Apply(Op{Kind: Init, Seq: 5, Endpoints: 4, Clusters: Regulars(0, 3)})
	cla := translate.LoadAssignment(m.Aggregated(Regular(2)))
	b, err := proto.Marshal(cla)
	if err != nil {
		t.Fatal(err)
	}
	js, err := protojson.Marshal(cla)
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range [][]byte{b, js} {
		var found []uint32
		FindMarkers(enc, func(seq uint32, idx int32) { found = append(found, seq, uint32(idx)) })
		if len(found) != 2 || found[0] != 5 || found[1] != 2 {
			t.Errorf("markers in %d bytes: %v", len(enc), found)
		}
	}
}

func TestModel(t *testing.T) {
	var m Model
	changed, _ := m.Apply(Op{Kind: Init, Seq: 1, Endpoints: 6, Clusters: append(Regulars(0, 4), Ref{Index: 4, Owner: 2})})
	if len(changed) != 5 || m.Len() != 5 || m.Refs()[4].Owner != 2 {
		t.Fatalf("init: changed %v, len %d", changed, m.Len())
	}
	before := m.Endpoints(Regular(1))

	m.Apply(Op{Kind: Flap, Seq: 2, Clusters: []Ref{Regular(1)}, Endpoint: 3})
	after := m.Endpoints(Regular(1))
	for j := range after {
		wantHealth := sdk.Healthy
		if j == 3 {
			wantHealth = sdk.Unhealthy
		}
		if after[j].Health != wantHealth || after[j].Address != before[j].Address || after[j].Port != before[j].Port {
			t.Errorf("flap: endpoint %d = %+v", j, after[j])
		}
	}
	if after[0].Hostname != Marker(2, 1) || m.Seq(1) != 2 || m.Seq(0) != 1 {
		t.Errorf("flap marker %q, seqs %d %d", after[0].Hostname, m.Seq(1), m.Seq(0))
	}
	m.Apply(Op{Kind: Flap, Seq: 3, Clusters: []Ref{Regular(1)}, Endpoint: 3})
	if m.Endpoints(Regular(1))[3].Health != sdk.Healthy {
		t.Error("second flap did not restore the endpoint")
	}

	m.Apply(Op{Kind: Rollout, Seq: 4, Clusters: []Ref{Regular(1)}})
	rolled := m.Endpoints(Regular(1))
	for j := range rolled {
		if moved := rolled[j].Address != before[j].Address; moved != (j%2 == 1) {
			t.Errorf("rollout: endpoint %d moved=%v", j, moved)
		}
	}
	changed, _ = m.Apply(Op{Kind: Push, Seq: 5})
	if len(changed) != 5 || m.Endpoints(Regular(0))[2].Port == before[2].Port {
		t.Errorf("push: %d changed", len(changed))
	}
	changed, _ = m.Apply(Op{Kind: Add, Seq: 6, Endpoints: 2, Clusters: []Ref{Regular(9), Regular(1)}})
	if len(changed) != 1 || !m.Has(9) || len(m.Endpoints(Regular(9))) != 2 {
		t.Errorf("add: %v", changed)
	}
	_, removed := m.Apply(Op{Kind: Remove, Seq: 7, Clusters: []Ref{Regular(0), Regular(77)}})
	if len(removed) != 1 || m.Has(0) || m.Len() != 5 {
		t.Errorf("remove: %v, len %d", removed, m.Len())
	}
	// The same ops give the same state.
	var again Model
	for _, op := range []Op{
		{Kind: Init, Seq: 1, Endpoints: 6, Clusters: append(Regulars(0, 4), Ref{Index: 4, Owner: 2})},
		{Kind: Flap, Seq: 2, Clusters: []Ref{Regular(1)}, Endpoint: 3},
		{Kind: Flap, Seq: 3, Clusters: []Ref{Regular(1)}, Endpoint: 3},
		{Kind: Rollout, Seq: 4, Clusters: []Ref{Regular(1)}},
		{Kind: Push, Seq: 5},
		{Kind: Add, Seq: 6, Endpoints: 2, Clusters: []Ref{Regular(9), Regular(1)}},
		{Kind: Remove, Seq: 7, Clusters: []Ref{Regular(0), Regular(77)}},
	} {
		again.Apply(op)
	}
	for _, r := range m.Refs() {
		a, _ := json.Marshal(m.Cluster(r))
		b, _ := json.Marshal(again.Cluster(r))
		if string(a) != string(b) {
			t.Errorf("cluster %s differs:\n%s\n%s", r.Name(), a, b)
		}
	}
}
