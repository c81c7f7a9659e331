package xds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xdsbridge/xdsbridge/xds/conns"
)

// Keepalive finds clients that vanished without closing their connection
// (host gone, link cut, process frozen) and accepts the pings clients send
// to find a vanished server.
//
// A vanished client is evicted within Time+Timeout of the last thing it
// sent: after Time without receiving anything the server sends an HTTP/2
// PING, and closes the connection when no answer came within Timeout. At
// the TCP level, keepalive probes start after Time idle and repeat every
// Timeout, and TCP_USER_TIMEOUT (Timeout) makes the kernel drop a
// connection whose sent data or probes stay unacknowledged that long.
//
// The zero value keeps grpc-go's defaults (a ping after 2 hours, clients
// may ping every 5 minutes at most).
type Keepalive struct {
	// Time is how long a connection may be silent before the server pings.
	Time time.Duration
	// Timeout is how long a ping may go unanswered.
	Timeout time.Duration
	// MinPingInterval is the shortest interval between two pings a client
	// may send. A client that pings more often, three times in a row
	// without the server sending data in between, gets a GOAWAY
	// (too_many_pings) and is disconnected.
	MinPingInterval time.Duration
	// PermitWithoutStream allows client pings on a connection without an
	// open stream.
	PermitWithoutStream bool
}

// Bound is how long after a client vanished it stays registered at most:
// Time+Timeout. It is 0 when Time is not set.
func (k Keepalive) Bound() time.Duration {
	if k.Time <= 0 {
		return 0
	}
	return k.Time + k.Timeout
}

// tcpKeepalive is the TCP keepalive of accepted connections.
func (k Keepalive) tcpKeepalive() net.KeepAliveConfig {
	if k.Time <= 0 {
		return net.KeepAliveConfig{} // Go's default
	}
	return net.KeepAliveConfig{Enable: true, Idle: k.Time, Interval: max(k.Timeout, time.Second), Count: 3}
}

// listener accepts TCP connections with TCP keepalive and TCP_USER_TIMEOUT
// set, and keeps each one until the stats handler claims it, so that the
// registry can learn why the connection ended.
type listener struct {
	tuned     *tunedListener
	closed    chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	pending map[connKey]*trackedConn
}

type connKey struct{ local, remote string }

func keyOf(local, remote net.Addr) connKey {
	return connKey{addrString(local), addrString(remote)}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// tunedListener accepts TCP connections with TCP keepalive (set by the
// ListenConfig) and TCP_USER_TIMEOUT set. It serves REST as it is, so a
// REST client that vanished mid-response is dropped as soon as a gRPC
// one, and the gRPC listener around it.
type tunedListener struct {
	net.Listener
	userTimeout time.Duration // 0: the system's
	logger      *slog.Logger
}

func listenTuned(ctx context.Context, address string, ka Keepalive, logger *slog.Logger) (*tunedListener, error) {
	lc := net.ListenConfig{KeepAliveConfig: ka.tcpKeepalive()}
	l, err := lc.Listen(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	var userTimeout time.Duration
	if ka.Time > 0 {
		userTimeout = ka.Timeout
	}
	return &tunedListener{Listener: l, userTimeout: userTimeout, logger: logger}, nil
}

func (l *tunedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.userTimeout > 0 {
		if err := setUserTimeout(c, l.userTimeout); err != nil {
			l.logger.Debug("cannot set TCP_USER_TIMEOUT", "peer", addrString(c.RemoteAddr()), "err", err)
		}
	}
	return c, nil
}

func listen(ctx context.Context, address string, ka Keepalive, logger *slog.Logger) (*listener, error) {
	tl, err := listenTuned(ctx, address, ka, logger)
	if err != nil {
		return nil, err
	}
	return &listener{tuned: tl, closed: make(chan struct{}), pending: map[connKey]*trackedConn{}}, nil
}

// Addr is the address the listener is bound to.
func (l *listener) Addr() net.Addr { return l.tuned.Addr() }

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.tuned.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	tc.lastRead.Store(time.Now().UnixNano())
	l.mu.Lock()
	l.pending[keyOf(c.LocalAddr(), c.RemoteAddr())] = tc
	l.mu.Unlock()
	return tc, nil
}

// Close stops accepting; Closed is closed then.
func (l *listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.tuned.Close()
}

// Closed is closed once the listener stopped accepting.
func (l *listener) Closed() <-chan struct{} { return l.closed }

// claim returns the accepted connection from remote to local and stops
// keeping it; nil when there is none.
func (l *listener) claim(local, remote net.Addr) *trackedConn {
	key := keyOf(local, remote)
	l.mu.Lock()
	defer l.mu.Unlock()
	tc := l.pending[key]
	delete(l.pending, key)
	return tc
}

func (l *listener) forget(tc *trackedConn) {
	key := keyOf(tc.LocalAddr(), tc.RemoteAddr())
	l.mu.Lock()
	if l.pending[key] == tc {
		delete(l.pending, key)
	}
	l.mu.Unlock()
}

// trackedConn records what ended a connection: the first read or write
// error, or the server closing it first, and how long it had been silent.
type trackedConn struct {
	net.Conn
	l        *listener
	lastRead atomic.Int64 // unix nanoseconds

	mu          sync.Mutex
	err         error // first read or write error before Close
	closed      bool
	closedFirst bool          // Close came before any error: the server ended it
	silent      time.Duration // time since the last read when the server closed it
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.lastRead.Store(time.Now().UnixNano())
	}
	if err != nil {
		c.fail(err)
	}
	return n, err
}

func (c *trackedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.fail(err)
	}
	return n, err
}

func (c *trackedConn) fail(err error) {
	c.mu.Lock()
	if c.err == nil && !c.closed {
		c.err = err
	}
	c.mu.Unlock()
}

func (c *trackedConn) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		if c.err == nil {
			c.closedFirst = true
			c.silent = time.Since(time.Unix(0, c.lastRead.Load()))
		}
	}
	c.mu.Unlock()
	c.l.forget(c)
	return c.Conn.Close()
}

// reason says why the connection ended.
func (c *trackedConn) reason(ka Keepalive) (conns.Reason, string) {
	if c == nil {
		return conns.ReasonServerClose, "connection not tracked"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch err := c.err; {
	case errors.Is(err, syscall.ETIMEDOUT):
		return conns.ReasonKeepalive, fmt.Sprintf("tcp: %v (unacknowledged for %s)", err, ka.Timeout)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return conns.ReasonClientClose, err.Error()
	case err != nil:
		return conns.ReasonConnError, err.Error()
	case c.closedFirst && ka.Time > 0 && c.silent >= ka.Time:
		// Only the keepalive closes a connection that has been silent
		// for longer than Time.
		return conns.ReasonKeepalive, fmt.Sprintf("nothing received for %s; ping unanswered within %s", c.silent.Round(time.Millisecond), ka.Timeout)
	case c.closedFirst:
		return conns.ReasonServerClose, ""
	}
	return conns.ReasonServerClose, "connection still open"
}
