package bench_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/xdsbridge/xdsbridge/bench"
)

// TestTinyProfile runs every scenario against every system, with the
// clients in their own process as xdsbench runs them, and checks that
// every figure was measured for every system that can have it.
func TestTinyProfile(t *testing.T) {
	bin, pool := spawnClients(t)
	res, err := bench.Run(t.Context(), bench.Options{
		Profile:       bench.Tiny(),
		PluginCommand: []string{bin, "plugin"},
		Pool:          pool,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range res.Notes {
		t.Errorf("note: %s", n)
	}
	for _, f := range res.Figures {
		for _, sys := range res.Systems {
			_, ok := f.Values[sys]
			restOnly := strings.Contains(f.Key, "rest")
			bridgeOnly := strings.HasPrefix(f.Key, "ipc.") || strings.Contains(f.Key, "store_")
			switch {
			case restOnly && (sys == "linear" || sys == "floor"):
			case bridgeOnly && sys != "xdsbridge":
			case !ok:
				t.Errorf("%s: no value for %s", f.Key, sys)
			}
		}
	}
	for _, key := range []string{"nacks", "churn.undelivered"} {
		for _, sys := range res.Systems {
			for _, f := range res.Figures {
				if f.Key == key && f.Values[sys] != 0 {
					t.Errorf("%s: %s = %v", sys, key, f.Values[sys])
				}
			}
		}
	}
	var table bytes.Buffer
	if err := res.Table(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
}

// TestFleetScenario runs the fleet scenario small: every client on its own
// connection (the run notes it otherwise), every figure measured for every
// system but SnapshotCache, which the profile leaves out and the run says so.
func TestFleetScenario(t *testing.T) {
	bin, pool := spawnClients(t)
	profile := bench.Tiny()
	profile.Fleet = bench.Fleet{Clusters: 30, Endpoints: 3, Clients: 25, Changes: 2, SkipSnapshot: true}
	res, err := bench.Run(t.Context(), bench.Options{
		Profile:       profile,
		Scenarios:     []string{"fleet"},
		PluginCommand: []string{bin, "plugin"},
		Pool:          pool,
	})
	if err != nil {
		t.Fatal(err)
	}
	skipped := 0
	for _, n := range res.Notes {
		if strings.HasPrefix(n, "snapshot: fleet: skipped") {
			skipped++
			continue
		}
		t.Errorf("note: %s", n)
	}
	if skipped != 1 {
		t.Errorf("%d notes that SnapshotCache was skipped, want 1", skipped)
	}
	keys := map[string]bool{}
	for _, f := range res.Figures {
		keys[f.Key] = true
		for _, sys := range res.Systems {
			v, ok := f.Values[sys]
			switch {
			case sys == "snapshot" && ok:
				t.Errorf("%s: a value for the skipped SnapshotCache", f.Key)
			case sys != "snapshot" && !ok:
				t.Errorf("%s: no value for %s", f.Key, sys)
			case ok && v < 0 && !strings.HasSuffix(f.Key, "_kb"):
				t.Errorf("%s: %s = %v", f.Key, sys, v)
			}
		}
	}
	for _, k := range []string{"fleet.sync_ms", "fleet.heap_kb", "fleet.rss_kb", "fleet.last_ms", "fleet.p99_ms", "fleet.cpu_ms"} {
		if !keys[k] {
			t.Errorf("no figure %s", k)
		}
	}
	found := false
	for _, tg := range res.Targets {
		if strings.HasPrefix(tg.Name, "fleet, 25 SotW clients") {
			found = true
			if !tg.Scaled {
				t.Errorf("target %q at 25 clients not marked scaled-down", tg.Name)
			}
		}
	}
	if !found {
		t.Errorf("no fleet target in %+v", res.Targets)
	}
}
