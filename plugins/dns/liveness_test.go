package dns

import (
	"testing"
	"time"

	"github.com/xdsbridge/xdsbridge/sdk"
)

func TestMaxSilenceDefaults(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Names = []Name{{Name: "web.example."}}
	src := newSource(t, cfg, nil)
	// 5m max_refresh + 18.75s heartbeat spacing + 2m slack: the README
	// quotes it.
	if got, want := src.MaxSilence(), 7*time.Minute+18750*time.Millisecond; got != want {
		t.Errorf("MaxSilence() = %v, want %v", got, want)
	}
	var _ sdk.Liveness = src
}

// TestHeartbeat: with nothing changing, the source repeats its status as
// lookups answer, so the host sees progress within MaxSilence; the repeats
// carry no data.
func TestHeartbeat(t *testing.T) {
	f := startFake(t, newZone(t, true, "web.example. 0 IN A 10.0.0.1").handler())
	cfg := testConfig([]string{f.addr}, "web.example.")
	cfg.Type, cfg.Port = "A", 80
	h := run(t, newSource(t, cfg, nil))
	h.waitEndpoints(ClusterName("web.example."), "10.0.0.1:80 p0 w0")
	h.waitFor("connected", func(v *view) bool { return v.status.State == sdk.Connected })
	before := h.view.updates
	// max_refresh 1s: a repeat at least every 62.5ms of lookups (TTL 0,
	// min_refresh 50ms).
	h.quiet(time.Second)
	if beats := h.view.updates - before; beats < 3 {
		t.Errorf("%d status repeats in 1s, want at least 3", beats)
	}
	if lim := time.Second + time.Second/16 + 2*time.Minute; newSource(t, cfg, nil).MaxSilence() != lim {
		t.Errorf("MaxSilence() = %v, want %v", newSource(t, cfg, nil).MaxSilence(), lim)
	}
}
