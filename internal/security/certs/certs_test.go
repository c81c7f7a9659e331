package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xdsbridge/xdsbridge/internal/security/securitytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// files are a server's certificate files in a temporary directory.
type testFiles struct {
	dir, cert, key, ca string
}

func writeFiles(t *testing.T, ca *securitytest.CA, clientCA []byte) (testFiles, *big.Int) {
	t.Helper()
	dir := t.TempDir()
	f := testFiles{dir: dir, cert: filepath.Join(dir, "server.crt"), key: filepath.Join(dir, "server.key")}
	c, k, sn := ca.Server(t)
	securitytest.WriteFile(t, f.cert, c)
	securitytest.WriteFile(t, f.key, k)
	if clientCA != nil {
		f.ca = filepath.Join(dir, "ca.crt")
		securitytest.WriteFile(t, f.ca, clientCA)
	}
	return f, sn
}

func TestNewRefuses(t *testing.T) {
	ca := securitytest.NewCA(t, "ca")
	other := securitytest.NewCA(t, "other")
	_, otherKey, _ := other.Server(t)
	expired, expiredKey, _ := ca.Issue(t, securitytest.Leaf{DNSNames: []string{"localhost"}, NotAfter: time.Now().Add(-time.Minute)})
	tests := []struct {
		name string
		// edit breaks the files or the options.
		edit func(t *testing.T, f testFiles, o *Options)
		want []string
	}{
		{"no key file", func(t *testing.T, f testFiles, o *Options) { o.KeyFile = "" }, []string{"both required"}},
		{"missing cert", func(t *testing.T, f testFiles, o *Options) { o.CertFile = filepath.Join(f.dir, "nope.crt") }, []string{"nope.crt", "no such file"}},
		{"key of another certificate", func(t *testing.T, f testFiles, o *Options) {
			securitytest.WriteFile(t, f.key, otherKey)
		}, []string{"server.crt with", "server.key", "private key does not match"}},
		{"expired", func(t *testing.T, f testFiles, o *Options) {
			securitytest.WriteFile(t, f.cert, expired)
			securitytest.WriteFile(t, f.key, expiredKey)
		}, []string{"server.crt", "expired at"}},
		{"client CA not PEM", func(t *testing.T, f testFiles, o *Options) {
			securitytest.WriteFile(t, f.ca, []byte("hello"))
		}, []string{"ca.crt", "not PEM"}},
		{"client CA holds a key", func(t *testing.T, f testFiles, o *Options) {
			securitytest.WriteFile(t, f.ca, append(bytes.Clone(ca.PEM), otherKey...))
		}, []string{"ca.crt", `"PRIVATE KEY", want CERTIFICATE`}},
		{"client CA empty", func(t *testing.T, f testFiles, o *Options) {
			securitytest.WriteFile(t, f.ca, []byte("\n"))
		}, []string{"ca.crt", "no certificates"}},
		{"TLS 1.1", func(t *testing.T, f testFiles, o *Options) { o.MinVersion = tls.VersionTLS11 }, []string{"want TLS 1.2 or 1.3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := writeFiles(t, ca, ca.PEM)
			o := Options{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.ca}
			tt.edit(t, f, &o)
			_, err := New(o)
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("error %q quotes a file's contents", err)
			}
		})
	}
}

// echoServer serves TLS with cfg on 127.0.0.1, echoing what each client
// writes, until the test ends.
func echoServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(c, c) })
		}
	})
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

// dial connects as a client trusting ca, with cert when given, and
// makes a round trip, which is where a refused client certificate shows
// up in TLS 1.3.
func dial(t *testing.T, addr string, ca *securitytest.CA, cert *tls.Certificate) (*tls.Conn, error) {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	if err := roundTrip(c); err != nil {
		c.Close()
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

func roundTrip(c *tls.Conn) error {
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("x")); err != nil {
		return err
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	return c.SetDeadline(time.Time{})
}

func servedSerial(t *testing.T, addr string, ca *securitytest.CA) *big.Int {
	t.Helper()
	c, err := dial(t, addr, ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockedBuffer is a log sink safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// run runs r until the test ends.
func run(t *testing.T, r *Reloader) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of its context ending")
		}
	})
}

// TestRotation replaces the served certificate on disk and checks that
// new handshakes get the new one while an open connection lives on, that
// files that do not load are refused (the previous certificate stays,
// the log says why), and that a good set after a bad one is taken.
func TestRotation(t *testing.T) {
	tests := []struct {
		name string
		// watch uses file events, with polling too slow to matter; the
		// other cases poll only.
		watch bool
		// inPlace writes the files where they are, certificate first,
		// instead of renaming new files into place.
		inPlace bool
	}{
		{name: "events, rename", watch: true},
		{name: "events, written in place", watch: true, inPlace: true},
		{name: "polling, rename"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := securitytest.NewCA(t, "ca")
			f, sn1 := writeFiles(t, ca, nil)
			logs := &lockedBuffer{}
			reloads := make(chan error, 10)
			o := Options{
				Logger:   slog.New(slog.NewJSONHandler(logs, nil)),
				CertFile: f.cert, KeyFile: f.key,
				PollInterval: 50 * time.Millisecond,
				OnReload:     func(err error) { reloads <- err },
			}
			if tt.watch {
				o.PollInterval = time.Hour
			}
			r, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			r.noWatch = !tt.watch
			run(t, r)
			addr := echoServer(t, r.TLSConfig())

			old, err := dial(t, addr, ca, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := old.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(sn1) != 0 {
				t.Fatalf("served serial %x, want %x", got, sn1)
			}

			write := func(cert, key []byte) {
				if tt.inPlace {
					if err := os.WriteFile(f.cert, cert, 0o600); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(f.key, key, 0o600); err != nil {
						t.Fatal(err)
					}
					return
				}
				securitytest.WriteFile(t, f.key, key)
				securitytest.WriteFile(t, f.cert, cert)
			}
			c2, k2, sn2 := ca.Server(t)
			write(c2, k2)
			eventually(t, 10*time.Second, "new handshakes get the new certificate", func() bool {
				return servedSerial(t, addr, ca).Cmp(sn2) == 0
			})
			if r.Leaf().SerialNumber.Cmp(sn2) != 0 {
				t.Errorf("Leaf serial %x, want %x", r.Leaf().SerialNumber, sn2)
			}
			if err := roundTrip(old); err != nil {
				t.Fatalf("the connection opened before the rotation: %v", err)
			}
			if got := old.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(sn1) != 0 {
				t.Errorf("the old connection's certificate changed to %x", got)
			}

			// A key that does not go with the certificate: refused.
			c3, _, _ := ca.Server(t)
			_, k3other, _ := ca.Server(t)
			write(c3, k3other)
			var refusal error
			eventually(t, 10*time.Second, "the bad files are refused", func() bool {
				select {
				case err := <-reloads:
					if err != nil {
						refusal = err
					}
				default:
				}
				return refusal != nil
			})
			if got := servedSerial(t, addr, ca); got.Cmp(sn2) != 0 {
				t.Errorf("after bad files, served serial %x, want the previous %x", got, sn2)
			}
			if !strings.Contains(logs.String(), "keeping the previous certificate") || !strings.Contains(logs.String(), "private key does not match") {
				t.Errorf("the log does not say why the files were refused:\n%s", logs)
			}
			if strings.Contains(logs.String(), "PRIVATE KEY") {
				t.Errorf("the log quotes a key:\n%s", logs)
			}

			c4, k4, sn4 := ca.Server(t)
			write(c4, k4)
			eventually(t, 10*time.Second, "good files after bad ones are taken", func() bool {
				return servedSerial(t, addr, ca).Cmp(sn4) == 0
			})
			if err := roundTrip(old); err != nil {
				t.Fatalf("the first connection after two rotations: %v", err)
			}
		})
	}
}

// TestClientCA requires client certificates from the client CA, and
// follows a change of the client CA file.
func TestClientCA(t *testing.T) {
	ca := securitytest.NewCA(t, "server-and-client-ca")
	ca2 := securitytest.NewCA(t, "next-client-ca")
	f, _ := writeFiles(t, ca, ca.PEM)
	r, err := New(Options{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.ca, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !r.RequiresClientCert() {
		t.Error("RequiresClientCert = false with a client CA")
	}
	run(t, r)
	addr := echoServer(t, r.TLSConfig())
	c1 := ca.Client(t, "spiffe://example.org/a")
	c2 := ca2.Client(t, "spiffe://example.org/b")

	tests := []struct {
		name string
		cert *tls.Certificate
		ok   bool
	}{
		{"no certificate", nil, false},
		{"from another CA", &c2, false},
		{"from the client CA", &c1, true},
	}
	for _, tt := range tests {
		_, err := dial(t, addr, ca, tt.cert)
		if (err == nil) != tt.ok {
			t.Errorf("%s: dial error %v, want ok=%v", tt.name, err, tt.ok)
		}
	}

	securitytest.WriteFile(t, f.ca, ca2.PEM)
	eventually(t, 10*time.Second, "the new client CA is used", func() bool {
		_, err := dial(t, addr, ca, &c2)
		return err == nil
	})
	if _, err := dial(t, addr, ca, &c1); err == nil {
		t.Error("a client of the removed CA still gets in")
	}
}

// TestNextProtos checks the protocols the HTTP config offers, and the
// defaults.
func TestNextProtos(t *testing.T) {
	ca := securitytest.NewCA(t, "ca")
	f, _ := writeFiles(t, ca, nil)
	r, err := New(Options{CertFile: f.cert, KeyFile: f.key})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		cfg   *tls.Config
		offer []string
		want  string
	}{
		{"http h2", r.TLSConfig(), []string{"h2", "http/1.1"}, "h2"},
		{"http 1.1", r.TLSConfig(), []string{"http/1.1"}, "http/1.1"},
	} {
		addr := echoServer(t, tt.cfg)
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", NextProtos: tt.offer})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := c.ConnectionState().NegotiatedProtocol; got != tt.want {
			t.Errorf("%s: negotiated %q, want %q", tt.name, got, tt.want)
		}
		c.Close()
	}
	if v := r.TLSConfig().MinVersion; v != tls.VersionTLS12 {
		t.Errorf("default MinVersion %#x, want TLS 1.2", v)
	}
	var unknown x509.UnknownAuthorityError
	_, err = tls.Dial("tcp", echoServer(t, r.TLSConfig()), &tls.Config{RootCAs: securitytest.NewCA(t, "x").Pool(), ServerName: "localhost"})
	if !errors.As(err, &unknown) {
		t.Errorf("a client that trusts another CA: %v, want x509.UnknownAuthorityError", err)
	}
}
