// Package dnsserver runs a real BIND 9 name server (named) for tests.
//
// Each Server is one named process in a t.TempDir(), listening on a free
// port of 127.0.0.1 over UDP and TCP, authoritative for one primary zone
// with recursion off. Tests change the zone while it runs with RFC 2136
// dynamic updates signed by a TSIG key that only the test knows (Update,
// Replace, Add), and take the server away and back with Stop and Restart;
// named keeps the zone's changes in its journal across a restart.
//
// named is found on PATH (Debian package bind9). When it is missing the test
// is skipped, or fails under `make test` (package peers).
package dnsserver

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/xdsbridge/xdsbridge/test/peers"
)

// Config describes the zone a Server serves.
type Config struct {
	// Zone is the zone's origin. Default: "example.test.".
	Zone string
	// Records are the zone's initial records in zone-file syntax, one per
	// string; relative names are relative to Zone, and records without a TTL
	// get TTL. The SOA and NS records are written for you.
	Records []string
	// TTL is the default TTL of Records. Default: 1 (second).
	TTL uint32
	// NegativeTTL is the SOA MINIMUM, how long NXDOMAIN and NODATA answers
	// may be cached. Default: 1 (second).
	NegativeTTL uint32
}

// StartTimeout bounds how long named may take to answer after it starts.
const StartTimeout = 15 * time.Second

// errBadZone is named refusing the zone file: no use trying again.
var errBadZone = errors.New("named did not load the zone (see its log)")

// keyName is the TSIG key dynamic updates are signed with.
const keyName = "xdsbridge-test."

// Server is a running (or stopped) named.
type Server struct {
	cfg    Config
	dir    string
	conf   string
	port   int
	secret string
	bin    string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	out  *syncBuffer   // named's log
}

// Binary returns the path of named, or skips t when it is not installed
// (fails t when the peers are required, peers.Required).
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("named")
	if err != nil {
		peers.Missing(t, "BIND (named)", "not found on PATH (Debian package bind9; `bash test/tools/dns.sh` prints its path): %v", err)
	}
	return bin
}

// Start writes a configuration and zone into a t.TempDir(), starts named and
// waits until it answers for the zone. The server is stopped when the test
// ends, and its log is written to the test log if the test failed.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Zone == "" {
		cfg.Zone = "example.test."
	}
	cfg.Zone = dns.Fqdn(cfg.Zone)
	if cfg.TTL == 0 {
		cfg.TTL = 1
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = 1
	}
	s := &Server{cfg: cfg, bin: Binary(t), dir: t.TempDir()}
	s.conf = filepath.Join(s.dir, "named.conf")

	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatalf("dnsserver: tsig key: %v", err)
	}
	s.secret = base64.StdEncoding.EncodeToString(key)
	if err := os.WriteFile(filepath.Join(s.dir, "zone.db"), []byte(s.zoneFile()), 0o644); err != nil {
		t.Fatalf("dnsserver: %v", err)
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("named log:\n%s", s.log())
		}
	})

	// A free port can be taken by someone else before named binds it; try
	// a few.
	var err error
	for range 3 {
		if s.port, err = freePort(); err != nil {
			continue
		}
		if err = os.WriteFile(s.conf, []byte(s.namedConf()), 0o644); err != nil {
			t.Fatalf("dnsserver: %v", err)
		}
		if err = s.start(); err == nil {
			return s
		}
		if errors.Is(err, errBadZone) {
			break
		}
	}
	t.Fatalf("dnsserver: start named: %v\nlog:\n%s", err, s.log())
	return nil
}

// Addr is the server's "127.0.0.1:port", for UDP and TCP.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Zone is the zone's origin, with its trailing dot.
func (s *Server) Zone() string { return s.cfg.Zone }

// Stop kills named and waits for it to exit. Queries then fail with
// "connection refused" until Restart.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("dnsserver: stop named: %v", err)
	}
}

// Restart starts named again on the same port with the zone as it was,
// updates included, and waits until it answers. A running server is
// stopped first.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	var err error
	// The port was named's a moment ago; give the kernel a few tries.
	for range 3 {
		if err = s.start(); err == nil {
			return
		}
	}
	t.Fatalf("dnsserver: restart named: %v\nlog:\n%s", err, s.log())
}

// Update sends one dynamic update, built by fn on a message already set up
// for the zone (fn calls Insert, Remove, RemoveRRset, RemoveName, …), and
// fails t unless the server applies it. The update is atomic: queries see
// all of it or none.
func (s *Server) Update(t testing.TB, fn func(m *dns.Msg)) {
	t.Helper()
	m := new(dns.Msg)
	m.SetUpdate(s.cfg.Zone)
	fn(m)
	m.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second, TsigSecret: map[string]string{keyName: s.secret}}
	r, _, err := c.Exchange(m, s.Addr())
	if err != nil {
		t.Fatalf("dnsserver: update: %v", err)
	}
	if r.Rcode != dns.RcodeSuccess {
		t.Fatalf("dnsserver: update refused: %s", dns.RcodeToString[r.Rcode])
	}
}

// Add inserts records, given in zone-file syntax as in Config.Records.
func (s *Server) Add(t testing.TB, records ...string) {
	t.Helper()
	rrs := s.Parse(t, records...)
	s.Update(t, func(m *dns.Msg) { m.Insert(rrs) })
}

// Replace replaces every record of rrtype at name (relative to the zone, or
// absolute) with records in one atomic update. With no records it deletes
// them; a name left with no records at all then answers NXDOMAIN.
func (s *Server) Replace(t testing.TB, name string, rrtype uint16, records ...string) {
	t.Helper()
	rrs := s.Parse(t, records...)
	owner := s.absolute(name)
	s.Update(t, func(m *dns.Msg) {
		m.RemoveRRset([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: owner, Rrtype: rrtype, Class: dns.ClassINET}}})
		if len(rrs) > 0 {
			m.Insert(rrs)
		}
	})
}

// Parse parses records in zone-file syntax relative to the zone.
func (s *Server) Parse(t testing.TB, records ...string) []dns.RR {
	t.Helper()
	zp := dns.NewZoneParser(strings.NewReader(strings.Join(records, "\n")), s.cfg.Zone, "")
	zp.SetDefaultTTL(s.cfg.TTL)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("dnsserver: parse records: %v", err)
	}
	return rrs
}

func (s *Server) absolute(name string) string {
	if name == "@" || name == "" {
		return s.cfg.Zone
	}
	if dns.IsFqdn(name) {
		return name
	}
	return name + "." + s.cfg.Zone
}

func (s *Server) zoneFile() string {
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN %s\n$TTL %d\n", s.cfg.Zone, s.cfg.TTL)
	fmt.Fprintf(&b, "@ IN SOA ns.%s hostmaster.%s 1 3600 600 86400 %d\n", s.cfg.Zone, s.cfg.Zone, s.cfg.NegativeTTL)
	fmt.Fprintf(&b, "@ IN NS ns.%s\nns IN A 127.0.0.1\n", s.cfg.Zone)
	for _, r := range s.cfg.Records {
		b.WriteString(r)
		b.WriteByte('\n')
	}
	return b.String()
}

func (s *Server) namedConf() string {
	return fmt.Sprintf(`options {
	directory %[1]q;
	pid-file %[2]q;
	session-keyfile %[3]q;
	managed-keys-directory %[1]q;
	listen-on port %[4]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	allow-query { any; };
	dnssec-validation no;
	notify no;
	minimal-responses no;
};
controls { };
key %[5]q {
	algorithm hmac-sha256;
	secret %[6]q;
};
zone %[7]q {
	type primary;
	file %[8]q;
	allow-update { key %[5]q; };
};
`, s.dir, filepath.Join(s.dir, "named.pid"), filepath.Join(s.dir, "session.key"),
		s.port, keyName, s.secret, s.cfg.Zone, filepath.Join(s.dir, "zone.db"))
}

// start launches named and waits until it answers for the zone, or exits, or
// StartTimeout passes.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	if s.out == nil {
		s.out = &syncBuffer{}
	}
	// -g: foreground, log to stderr; -4: IPv4 only; -n 1: one worker.
	// As root named keeps its privileges (no -u): everything it touches is
	// in the temporary directory.
	cmd := exec.Command(s.bin, "-g", "-4", "-n", "1", "-c", s.conf)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { // owned by stop, which waits for done
		cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	deadline := time.Now().Add(StartTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	q := new(dns.Msg)
	q.SetQuestion(s.cfg.Zone, dns.TypeSOA)
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	for {
		if r, _, err := c.Exchange(q, s.Addr()); err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
			return nil
		}
		if strings.Contains(s.out.String(), "not loaded due to errors") {
			s.kill()
			return errBadZone
		}
		select {
		case <-done:
			s.cmd, s.done = nil, nil
			return fmt.Errorf("named exited: %v", cmd.ProcessState)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("named did not answer within %s", StartTimeout)
		}
	}
}

// stop kills named, if running, and waits for it.
func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kill()
}

// kill stops the running named; s.mu is held.
func (s *Server) kill() error {
	if s.cmd == nil {
		return nil
	}
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("named did not exit after SIGKILL")
	}
}

func (s *Server) log() string {
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// freePort finds a port of 127.0.0.1 that is free for both TCP and UDP.
func freePort() (int, error) {
	var err error
	for range 10 {
		var l net.Listener
		l, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			continue
		}
		port := l.Addr().(*net.TCPAddr).Port
		var p net.PacketConn
		p, err = net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err != nil {
			continue
		}
		p.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free port: %w", err)
}

// syncBuffer is a bytes.Buffer safe for named's output goroutines and the
// test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
