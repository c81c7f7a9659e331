package fleet

import (
	"fmt"
	"syscall"
)

// RaiseFDLimit raises this process's soft limit on open files to its hard
// limit and fails, saying how many are needed, if that is fewer than need:
// every client (and, in the control plane's process, every client it
// serves) holds a connection.
func RaiseFDLimit(need int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("open files limit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("raise open files limit to %d: %w", lim.Max, err)
		}
	}
	if lim.Cur < uint64(need) {
		return fmt.Errorf("open files limit is %d, %d clients need %d: raise the hard limit (ulimit -Hn)", lim.Cur, need-FDSlack, need)
	}
	return nil
}

// FDSlack is the files a process needs besides the clients' connections.
const FDSlack = 256
