package xds

import (
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/xdsbridge/xdsbridge/xds/conns"
)

func TestDisconnectReason(t *testing.T) {
	ka := Keepalive{Time: time.Second, Timeout: time.Second}
	tests := []struct {
		name string
		c    *trackedConn
		want conns.Reason
	}{
		{"read EOF", &trackedConn{err: io.EOF}, conns.ReasonClientClose},
		{"reset", &trackedConn{err: fmt.Errorf("read: %w", syscall.ECONNRESET)}, conns.ReasonClientClose},
		{"broken pipe", &trackedConn{err: fmt.Errorf("write: %w", syscall.EPIPE)}, conns.ReasonClientClose},
		{"kernel gave up", &trackedConn{err: fmt.Errorf("read: %w", syscall.ETIMEDOUT)}, conns.ReasonKeepalive},
		{"other error", &trackedConn{err: errors.New("tls: bad record")}, conns.ReasonConnError},
		{"closed by the server after silence", &trackedConn{closed: true, closedFirst: true, silent: 2 * time.Second}, conns.ReasonKeepalive},
		{"closed by the server, not silent", &trackedConn{closed: true, closedFirst: true, silent: 10 * time.Millisecond}, conns.ReasonServerClose},
		{"not tracked", nil, conns.ReasonServerClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, detail := tt.c.reason(ka); got != tt.want {
				t.Errorf("reason = %q (%s), want %q", got, detail, tt.want)
			}
		})
	}
	// Without keepalive configured, silence is not a keepalive timeout.
	c := &trackedConn{closed: true, closedFirst: true, silent: time.Hour}
	if got, _ := c.reason(Keepalive{}); got != conns.ReasonServerClose {
		t.Errorf("without keepalive: %q", got)
	}
}
