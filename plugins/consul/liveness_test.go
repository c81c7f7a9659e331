package consul

import (
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/xdsbridge/xdsbridge/sdk"
	consultest "github.com/xdsbridge/xdsbridge/test/consul"
)

func TestMaxSilenceDefaults(t *testing.T) {
	src, err := New(DefaultConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	// 5m wait + 18.75s jitter + 30s request timeout + 30s retry.max +
	// 18.75s heartbeat spacing + 30s slack: the README quotes it.
	if got, want := src.MaxSilence(), 7*time.Minute+7500*time.Millisecond; got != want {
		t.Errorf("MaxSilence() = %v, want %v", got, want)
	}
	var _ sdk.Liveness = src
}

// TestHeartbeat: with nothing changing in Consul, the source repeats its
// status as the catalog query answers, so the host sees progress well
// within MaxSilence; the repeats carry no data.
func TestHeartbeat(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t, consultest.Options{})
	registerExternal(t, a.Client(), "hb-node", "10.9.0.1", nil, &api.AgentService{ID: "hb-1", Service: "hb", Port: 80}, api.HealthPassing)
	cfg := testConfig(a, "hb")
	cfg.Wait = time.Second
	w := startSource(t, cfg, Options{})
	w.waitFor("the full state", func(v view) bool { return hasFull(v) && v.status.State == sdk.Connected })
	mark := w.mark()
	time.Sleep(3500 * time.Millisecond) // three catalog answers at least
	beats := 0
	for _, u := range w.since(mark) {
		if u.Full || len(u.Clusters)+len(u.RemovedClusters) > 0 {
			t.Errorf("data with nothing changed: %+v", u)
		}
		if u.Status != nil && u.Status.State == sdk.Connected {
			beats++
		}
	}
	if beats < 2 {
		t.Errorf("%d status repeats in 3.5s with wait 1s, want at least 2", beats)
	}
}
