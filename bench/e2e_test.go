package bench_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/xdsbridge/xdsbridge/bench"
	"github.com/xdsbridge/xdsbridge/bench/fleet"
)

// TestTinyProfile runs every scenario against every system, with the
// clients in their own process as xdsbench runs them, and checks that
// every figure was measured for every system that can have it.
func TestTinyProfile(t *testing.T) {
	bin := benchBinary(t)
	pool, err := fleet.Spawn([]string{bin, "clients"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := pool.Close(); err != nil {
			t.Error(err)
		}
	}()
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
