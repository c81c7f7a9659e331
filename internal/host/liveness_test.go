package host

import (
	"strings"
	"testing"
	"time"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// TestStaleSource: a source that declared a max_silence and then sends
// nothing, while its process answers health checks, is marked stale; with
// RestartOnStale its plugin is restarted, otherwise it keeps running.
func TestStaleSource(t *testing.T) {
	for _, restart := range []bool{false, true} {
		name := map[bool]string{false: "reported", true: "restarted"}[restart]
		t.Run(name, func(t *testing.T) {
			p := testSpec(name, "mode: block_after_first\nmax_silence: 300ms\n")
			p.RestartOnStale = restart
			h, rec, stop := runHost(t, Options{PingInterval: 100 * time.Millisecond}, p)
			rec.waitFor(t, 30*time.Second, "the full state", func(us []sdk.Update) bool { return fulls(us) >= 1 })
			deadline := time.Now().Add(30 * time.Second)
			for {
				st := h.Statuses()[0]
				if st.MaxSilence != 300*time.Millisecond {
					t.Fatalf("MaxSilence = %v, want 300ms", st.MaxSilence)
				}
				if !restart && st.Stale {
					time.Sleep(time.Second) // and it stays, running
					st = h.Statuses()[0]
					if !st.Stale || st.Restarts != 0 || st.State != "running" {
						t.Fatalf("status %+v: want stale, running, never restarted", st)
					}
					break
				}
				if restart && st.Restarts >= 1 {
					if !strings.Contains(st.LastError, "max_silence") {
						t.Fatalf("last error %q does not name max_silence", st.LastError)
					}
					rec.waitFor(t, 30*time.Second, "the restarted plugin's full state", func(us []sdk.Update) bool { return fulls(us) >= 2 })
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("status %+v after 30s", st)
				}
				time.Sleep(20 * time.Millisecond)
			}
			stop()
		})
	}
}

// TestHeartbeatsKeepSourceFresh: status repeats count as progress and are
// not passed on to the sink.
func TestHeartbeatsKeepSourceFresh(t *testing.T) {
	h, rec, stop := runHost(t, Options{}, testSpec("beats", "beat: 50ms\nmax_silence: 300ms\n"))
	rec.waitFor(t, 30*time.Second, "the full state", func(us []sdk.Update) bool { return fulls(us) >= 1 })
	start := h.Statuses()[0].LastProgress
	for range 20 {
		time.Sleep(50 * time.Millisecond)
		if st := h.Statuses()[0]; st.Stale {
			t.Fatalf("stale while beating every 50ms: %+v", st)
		}
	}
	if st := h.Statuses()[0]; !st.LastProgress.After(start) {
		t.Errorf("LastProgress %v did not move from %v", st.LastProgress, start)
	}
	stop()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.updates) != 1 {
		t.Errorf("the sink got %d updates, want the full state alone: %+v", len(rec.updates), rec.updates)
	}
}
