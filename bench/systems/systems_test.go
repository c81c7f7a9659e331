package systems_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xdsbridge/xdsbridge/bench/fleet"
	"github.com/xdsbridge/xdsbridge/bench/systems"
	"github.com/xdsbridge/xdsbridge/bench/workload"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// exercise connects every kind of client the system serves and checks
// that each kind of change reaches exactly the clients concerned.
func exercise(t *testing.T, sys systems.System) {
	ctx := t.Context()
	var m workload.Model
	solo := workload.Ref{Index: 20, Owner: 1}
	init := workload.Op{Kind: workload.Init, Seq: 1, Endpoints: 4, Clusters: append(workload.Regulars(0, 20), solo)}
	m.Apply(init)
	target, err := sys.Start(ctx, &m, init)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sys.Stop(); err != nil {
			t.Error(err)
		}
	}()
	pool := fleet.NewLocal(nil)
	defer pool.Close()
	if err := pool.Reset(fleet.Options{ShareMilli: 500, MaxClusters: 40, RESTInterval: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	kinds := []fleet.Kind{fleet.SotW, fleet.Delta, fleet.SotW, fleet.Delta}
	if target.REST != "" {
		kinds = append(kinds, fleet.REST, fleet.REST)
	}
	first, err := pool.Connect(target, kinds, m.Refs())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := pool.WaitSynced(ctx, first, first+int32(len(kinds)), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i, at := range rep.At {
		if at == 0 {
			t.Fatalf("client %d (%v) not synced", i, rep.Kinds[i])
		}
	}

	seq := uint32(1)
	step := func(what string, op workload.Op, ev fleet.Event, wantAtLeast int) {
		t.Helper()
		seq++
		op.Seq, ev.Seq = seq, seq
		if err := pool.Announce([]fleet.Event{ev}); err != nil {
			t.Fatal(err)
		}
		changed, removed := m.Apply(op)
		if err := sys.Apply(ctx, op, &m, changed, removed); err != nil {
			t.Fatal(err)
		}
		ok, err := pool.Wait(ctx, []uint32{seq}, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		reps, err := pool.Report([]uint32{seq})
		if err != nil || len(reps) != 1 {
			t.Fatalf("%s: report %v %v", what, reps, err)
		}
		r := reps[0]
		if !ok || len(r.Receipts) != r.Expected || r.Expected < wantAtLeast {
			t.Fatalf("%s: %d of %d clients had it (want all, at least %d)", what, len(r.Receipts), r.Expected, wantAtLeast)
		}
	}
	one := []workload.Ref{workload.Regular(3)}
	step("flap", workload.Op{Kind: workload.Flap, Clusters: one, Endpoint: 1}, fleet.Event{Clusters: one}, 1)
	step("solo flap", workload.Op{Kind: workload.Flap, Clusters: []workload.Ref{solo}, Endpoint: 2}, fleet.Event{Clusters: []workload.Ref{solo}}, 1)
	step("push", workload.Op{Kind: workload.Push}, fleet.Event{Clusters: m.Refs()}, len(kinds))
	some := workload.Regulars(5, 12)
	step("rollout", workload.Op{Kind: workload.Rollout, Clusters: some}, fleet.Event{Clusters: some}, 1)
	added := workload.Regulars(21, 25)
	step("add", workload.Op{Kind: workload.Add, Endpoints: 3, Clusters: added}, fleet.Event{Clusters: added}, 1)
	gone := workload.Regulars(0, 2)
	step("remove", workload.Op{Kind: workload.Remove, Clusters: gone}, fleet.Event{Clusters: gone, Removal: true}, len(kinds))

	c, err := pool.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.NACKs != 0 || c.StreamErrors != 0 || c.BytesRead == 0 {
		t.Errorf("counters %+v", c)
	}
}

func TestSnapshot(t *testing.T) { exercise(t, &systems.Snapshot{}) }
func TestLinear(t *testing.T)   { exercise(t, &systems.Linear{}) }
func TestFloor(t *testing.T)    { exercise(t, &systems.Floor{}) }

func TestBridge(t *testing.T) {
	exercise(t, &systems.Bridge{PluginCommand: []string{benchBinary(t), "plugin"}})
}

var (
	buildOnce sync.Once
	dir       string
	binary    string
	buildErr  error
)

// benchBinary builds bench/cmd/xdsbench once, for its hidden plugin subcommand.
func benchBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the plugin binary")
	}
	buildOnce.Do(func() {
		dir, buildErr = os.MkdirTemp("", "systems-test")
		if buildErr != nil {
			return
		}
		binary = filepath.Join(dir, "xdsbench")
		out, err := exec.CommandContext(context.Background(), "go", "build", "-o", binary, "github.com/xdsbridge/xdsbridge/bench/cmd/xdsbench").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build xdsbench: %v", buildErr)
	}
	return binary
}
