//go:build !linux

package xds

import (
	"net"
	"time"
)

// setUserTimeout does nothing where TCP_USER_TIMEOUT does not exist.
func setUserTimeout(net.Conn, time.Duration) error { return nil }
