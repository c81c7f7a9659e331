// Package e2e runs the xdsbridge binary the way a user does — a plugins.yaml,
// plugins out of process, real xDS clients — and checks what clients see.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bridgeBin is the xdsbridge binary under test: $XDSBRIDGE_BIN (make test
// builds it) or one built by TestMain.
var bridgeBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	bridgeBin = os.Getenv("XDSBRIDGE_BIN")
	if bridgeBin == "" {
		dir, err := os.MkdirTemp("", "xdsbridge-e2e")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		bridgeBin = filepath.Join(dir, "xdsbridge")
		cmd := exec.Command("go", "build", "-o", bridgeBin, "github.com/xdsbridge/xdsbridge/cmd/xdsbridge")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build xdsbridge:", err)
			return 1
		}
	}
	return m.Run()
}

// freePort returns a loopback address with a port that was free a moment ago.
func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// bridge is a running xdsbridge process.
type bridge struct {
	t         testing.TB
	dir       string
	grpcAddr  string
	restAddr  string
	adminAddr string
	cmd       *exec.Cmd
	log       *syncBuffer
	done      chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startBridge writes files into a fresh directory (plugins.yaml gets the
// xds and admin sections prepended unless it has them) and runs
// `xdsbridge run` there until the test ends. It waits for /readyz.
func startBridge(t testing.TB, files map[string]string) *bridge {
	t.Helper()
	b := &bridge{t: t, dir: t.TempDir(), grpcAddr: freePort(t), restAddr: freePort(t), adminAddr: freePort(t), log: &syncBuffer{}, done: make(chan struct{})}
	for name, content := range files {
		if name == "plugins.yaml" {
			content = b.withAddresses(content)
		}
		b.write(name, content)
	}
	b.start()
	return b
}

// withAddresses gives a plugins.yaml the bridge's listen addresses: a whole
// xds and admin section when it has no xds section, and the addresses
// alone when its xds section (at the top) names none.
func (b *bridge) withAddresses(content string) string {
	addrs := fmt.Sprintf("  grpc_address: %s\n  rest_address: %s\n", b.grpcAddr, b.restAddr)
	admin := fmt.Sprintf("admin:\n  address: %s\n", b.adminAddr)
	switch {
	case !strings.Contains(content, "xds:"):
		return "xds:\n" + addrs + admin + content
	case strings.HasPrefix(content, "xds:\n") && !strings.Contains(content, "grpc_address:") && !strings.Contains(content, "admin:"):
		return admin + "xds:\n" + addrs + strings.TrimPrefix(content, "xds:\n")
	}
	return content
}

func (b *bridge) write(name, content string) {
	b.t.Helper()
	path := filepath.Join(b.dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.t.Fatal(err)
	}
	// Write then rename, as editors and config management do.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		b.t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.t.Fatal(err)
	}
}

func (b *bridge) start() {
	b.t.Helper()
	b.cmd = exec.Command(bridgeBin, "run", "--config", "plugins.yaml", "--log-level", "debug")
	b.cmd.Dir = b.dir
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	go func() { _ = b.cmd.Wait(); close(b.done) }()
	b.t.Cleanup(func() {
		b.stop()
		if b.t.Failed() {
			b.t.Logf("xdsbridge log:\n%s", b.log.String())
		}
	})
	b.waitReady()
}

// stop sends SIGTERM and waits for a clean exit.
func (b *bridge) stop() {
	select {
	case <-b.done:
		return
	default:
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
		if code := b.cmd.ProcessState.ExitCode(); code != 0 {
			b.t.Errorf("xdsbridge exited with %d after SIGTERM", code)
		}
	case <-time.After(15 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
		b.t.Errorf("xdsbridge did not stop within 15s of SIGTERM")
	}
}

func (b *bridge) waitReady() {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-b.done:
			b.t.Fatalf("xdsbridge exited early:\n%s", b.log.String())
		default:
		}
		resp, err := http.Get("http://" + b.adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.t.Fatalf("xdsbridge not ready within 30s:\n%s", b.log.String())
}

// getJSON fetches an admin endpoint into v.
func (b *bridge) getJSON(path string, v any) {
	b.t.Helper()
	resp, err := http.Get("http://" + b.adminAddr + path)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		b.t.Fatalf("GET %s: %s: %s", path, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		b.t.Fatalf("GET %s: %v\n%s", path, err, body)
	}
}

// sourceStatus is one entry of /debug/sources.
type sourceStatus struct {
	Name        string `json:"name"`
	State       string `json:"state"`
	Pid         int    `json:"pid"`
	Restarts    int    `json:"restarts"`
	SourceState string `json:"source_state"`
	Reason      string `json:"source_reason"`
	LastError   string `json:"last_error"`
	Connected   bool   `json:"connected"`
	Stale       bool   `json:"stale"`
	MaxSilence  string `json:"max_silence"`
}

func (b *bridge) sources() map[string]sourceStatus {
	var out struct {
		Sources []sourceStatus `json:"sources"`
	}
	b.getJSON("/debug/sources", &out)
	m := map[string]sourceStatus{}
	for _, s := range out.Sources {
		m[s.Name] = s
	}
	return m
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
