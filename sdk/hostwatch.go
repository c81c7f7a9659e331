package sdk

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/xdsbridge/xdsbridge/internal/wire"
)

// hostPollInterval is how often a plugin checks that its host still runs.
// On Linux the kernel kills a plugin the moment its host dies (the host
// sets a parent-death signal); the check is what ends a plugin elsewhere,
// and one started through a wrapper.
const hostPollInterval = 250 * time.Millisecond

// watchHost sends on gone, once, why the host that started this process is
// gone, checking at start and then every hostPollInterval until stop is
// closed. The host is gone when this process's parent changes (it was
// re-parented), or when the process the host named in wire.EnvHostPID no
// longer exists (the host died before this process started, or it started
// a wrapper that started this process).
func watchHost(stop <-chan struct{}, gone chan<- string) {
	hostPid, _ := strconv.Atoi(os.Getenv(wire.EnvHostPID))
	parent := os.Getppid()
	tick := time.NewTicker(hostPollInterval)
	defer tick.Stop()
	for {
		why := ""
		switch {
		case os.Getppid() != parent:
			why = fmt.Sprintf("the parent process %d is gone", parent)
		case hostPid > 0 && parent == 1 && hostPid != 1:
			why = fmt.Sprintf("the host (pid %d) was gone before this plugin started", hostPid)
		case hostPid > 0 && !processExists(hostPid):
			why = fmt.Sprintf("the host (pid %d) is gone", hostPid)
		}
		if why != "" {
			gone <- why
			return
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}
