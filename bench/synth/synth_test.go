package synth

import (
	"context"
	"reflect"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xdsbridge/xdsbridge/bench/workload"
	"github.com/xdsbridge/xdsbridge/sdk"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The driver's Ops come out of the source as the updates a real source
// would send, matching the driver's own model.
func TestSourceFollowsController(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctl, err := Listen(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	src := &Source{cfg: Config{Control: ctl.Path()}}
	up := make(chan sdk.Update)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, up) }()
	if err := ctl.Accept(ctx); err != nil {
		t.Fatal(err)
	}

	var driver workload.Model
	ops := []workload.Op{
		{Kind: workload.Init, Seq: 1, Endpoints: 3, Clusters: workload.Regulars(0, 4)},
		{Kind: workload.Flap, Seq: 2, Clusters: []workload.Ref{workload.Regular(2)}, Endpoint: 1},
		{Kind: workload.Add, Seq: 3, Endpoints: 2, Clusters: workload.Regulars(4, 5)},
		{Kind: workload.Remove, Seq: 4, Clusters: workload.Regulars(0, 1)},
		{Kind: workload.Full, Seq: 5},
	}
	for _, op := range ops {
		if err := ctl.Send(op); err != nil {
			t.Fatal(err)
		}
		changed, removed := driver.Apply(op)
		var u sdk.Update
		select {
		case u = <-up:
		case <-ctx.Done():
			t.Fatalf("%v: no update", op.Kind)
		}
		switch op.Kind {
		case workload.Init, workload.Full:
			if !u.Full || len(u.Clusters) != driver.Len() {
				t.Fatalf("%v: full=%v, %d clusters, want a full state of %d", op.Kind, u.Full, len(u.Clusters), driver.Len())
			}
		case workload.Remove:
			if u.Full || len(u.RemovedClusters) != len(removed) || u.RemovedClusters[0] != removed[0].Name() {
				t.Fatalf("remove: %+v", u)
			}
			continue
		default:
			if u.Full || len(u.Clusters) != len(changed) {
				t.Fatalf("%v: %d clusters, want %d", op.Kind, len(u.Clusters), len(changed))
			}
		}
		for _, c := range u.Clusters {
			ref, ok := workload.ParseName([]byte(c.Name))
			if !ok {
				t.Fatalf("cluster name %q", c.Name)
			}
			want := driver.Cluster(ref)
			if !reflect.DeepEqual(c, want) {
				t.Fatalf("%v: cluster %s differs from the driver's", op.Kind, c.Name)
			}
		}
	}
	// The driver hanging up ends the source with an error, which ends the
	// plugin process.
	ctl.Close()
	if err := <-done; err == nil {
		t.Fatal("source did not fail when the driver hung up")
	}
}
