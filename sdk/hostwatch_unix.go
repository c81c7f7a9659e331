//go:build unix

package sdk

import (
	"errors"
	"syscall"
)

// processExists reports whether a process with the id pid exists.
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
