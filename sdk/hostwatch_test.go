//go:build unix

package sdk

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdsbridge/xdsbridge/internal/wire"
)

// goneWithin runs watchHost until it reports or d passes.
func goneWithin(t *testing.T, d time.Duration) (string, bool) {
	t.Helper()
	stop := make(chan struct{})
	gone := make(chan string, 1)
	done := make(chan struct{})
	go func() { watchHost(stop, gone); close(done) }()
	defer func() { close(stop); <-done }()
	select {
	case why := <-gone:
		return why, true
	case <-time.After(d):
		return "", false
	}
}

func TestWatchHost(t *testing.T) {
	// A pid that no longer exists: a child that has exited and been reaped.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	deadPid := cmd.Process.Pid

	for _, tt := range []struct {
		name string
		env  string
		gone bool
	}{
		{"the host is our parent", strconv.Itoa(os.Getppid()), false},
		{"the host is an ancestor that runs (a wrapper started us)", "1", false},
		{"no host named", "", false},
		{"the host is gone", strconv.Itoa(deadPid), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(wire.EnvHostPID, tt.env)
			why, gone := goneWithin(t, 3*hostPollInterval)
			if gone != tt.gone {
				t.Fatalf("gone = %v (%q), want %v", gone, why, tt.gone)
			}
			if gone && !strings.Contains(why, strconv.Itoa(deadPid)) {
				t.Errorf("reason %q does not name the host's pid %d", why, deadPid)
			}
		})
	}
}
