package xds

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Accepted sockets, gRPC and REST, get TCP keepalive (idle: Time,
// interval: Timeout) and TCP_USER_TIMEOUT (Timeout); gRPC ones are
// tracked until claimed.
func TestListenerSocketOptions(t *testing.T) {
	ka := Keepalive{Time: 7 * time.Second, Timeout: 3 * time.Second}
	logger := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name   string
		listen func() (net.Listener, error)
		// raw returns the accepted connection's socket.
		raw func(net.Conn) net.Conn
	}{
		{"grpc", func() (net.Listener, error) { return listen(context.Background(), "127.0.0.1:0", ka, logger) },
			func(c net.Conn) net.Conn { return c.(*trackedConn).Conn }},
		{"rest", func() (net.Listener, error) { return listenTuned(context.Background(), "127.0.0.1:0", ka, logger) },
			func(c net.Conn) net.Conn { return c }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := tc.listen()
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			client, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			c, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()

			raw, err := tc.raw(c).(syscall.Conn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			if err := raw.Control(func(fd uintptr) {
				for name, opt := range map[string][2]int{
					"SO_KEEPALIVE":     {unix.SOL_SOCKET, unix.SO_KEEPALIVE},
					"TCP_KEEPIDLE":     {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
					"TCP_KEEPINTVL":    {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
					"TCP_USER_TIMEOUT": {unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT},
				} {
					v, err := unix.GetsockoptInt(int(fd), opt[0], opt[1])
					if err != nil {
						t.Errorf("getsockopt %s: %v", name, err)
					}
					got[name] = v
				}
			}); err != nil {
				t.Fatal(err)
			}
			want := map[string]int{"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 7, "TCP_KEEPINTVL": 3, "TCP_USER_TIMEOUT": 3000}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %d, want %d", k, got[k], v)
				}
			}

			if gl, ok := l.(*listener); ok {
				if tc := gl.claim(c.LocalAddr(), c.RemoteAddr()); tc == nil {
					t.Error("the accepted connection is not tracked")
				}
				if tc := gl.claim(c.LocalAddr(), c.RemoteAddr()); tc != nil {
					t.Error("a connection was claimed twice")
				}
			}
		})
	}
}

// The server's own gRPC and REST sockets carry TCP_USER_TIMEOUT: the
// test finds the accepted socket among this process's descriptors by its
// address pair.
func TestServerSocketsUserTimeout(t *testing.T) {
	e := startEnv(t, Options{Keepalive: Keepalive{Time: 7 * time.Second, Timeout: 3 * time.Second}})
	for _, tc := range []struct{ name, addr string }{{"grpc", e.grpcAddr}, {"rest", e.restAddr}} {
		t.Run(tc.name, func(t *testing.T) {
			client, err := net.Dial("tcp", tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			server, peer := tc.addr, client.LocalAddr().String()
			var got int
			eventually(t, 5*time.Second, "the accepted socket", func() bool {
				v, ok := acceptedSockopt(t, server, peer, unix.TCP_USER_TIMEOUT)
				got = v
				return ok
			})
			if got != 3000 {
				t.Errorf("TCP_USER_TIMEOUT = %d ms, want 3000", got)
			}
		})
	}
}

// acceptedSockopt reads a TCP option of this process's socket from local
// to peer (both "ip:port").
func acceptedSockopt(t *testing.T, local, peer string, opt int) (int, bool) {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	for _, f := range fds {
		fd, err := strconv.Atoi(f.Name())
		if err != nil {
			continue
		}
		la, err := unix.Getsockname(fd)
		if err != nil || sockaddrString(la) != local {
			continue
		}
		pa, err := unix.Getpeername(fd)
		if err != nil || sockaddrString(pa) != peer {
			continue
		}
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, opt)
		return v, err == nil
	}
	return 0, false
}

func sockaddrString(sa unix.Sockaddr) string {
	if a, ok := sa.(*unix.SockaddrInet4); ok {
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
	}
	return ""
}
