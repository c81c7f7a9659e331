// Package consul starts real Consul agents for tests.
//
// Start runs `consul agent -dev` bound to 127.0.0.1 on free ports, waits until
// it has a leader and has registered its own node, and stops it when the test
// ends. The binary comes from the XDSBRIDGE_CONSUL environment variable (the
// Makefile sets it from test/tools/consul.sh); without it the test is skipped,
// or fails under `make test` (package peers). With -short the test is always
// skipped.
package consul

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/xdsbridge/xdsbridge/test/peers"
)

// EnvBinary is the environment variable holding the path of the consul
// binary.
const EnvBinary = "XDSBRIDGE_CONSUL"

// startTimeout bounds how long an agent may take to become ready.
const startTimeout = 60 * time.Second

// stopTimeout bounds a graceful stop before the agent is killed.
const stopTimeout = 10 * time.Second

// Options configures an agent.
type Options struct {
	// ACL enables ACLs with default policy deny. The agent's management
	// token is Agent.ManagementToken; it is also the agent's own token, so
	// the agent can register its node. Default: off.
	ACL bool
	// Datacenter is the agent's datacenter. Default: "dc1".
	Datacenter string
	// NodeName is the agent's node name. Default: "consul-dev".
	NodeName string
	// NodeMeta is the agent node's metadata. Default: none.
	NodeMeta map[string]string
	// JoinWAN lists the SerfWANAddr of agents in other datacenters to join
	// over the WAN (retried every 200ms until it works). Default: none.
	JoinWAN []string
	// ExtraHCL is appended to the generated configuration, e.g.
	// `limits { http_max_conns_per_client = 8 }`. Default: none.
	ExtraHCL string
}

// Agent is a running (or stopped) dev agent.
type Agent struct {
	// Addr is the HTTP API address, "127.0.0.1:port".
	Addr string
	// DNSAddr is the DNS interface address, "127.0.0.1:port".
	DNSAddr string
	// Datacenter and NodeName are the agent's.
	Datacenter string
	NodeName   string
	// ManagementToken is the initial management token when Options.ACL is
	// set, else empty.
	ManagementToken string
	// SerfWANAddr is the WAN gossip address other datacenters join.
	SerfWANAddr string
	// Ports are the agent's ports by name (http, dns, serf_lan, serf_wan,
	// server, grpc).
	Ports map[string]int

	nodeMeta map[string]string
	t        testing.TB
	tr       *http.Transport // shared by Client and ClientWithToken
	bin      string
	dir      string
	config   string
	logf     string

	mu   sync.Mutex
	proc *process // nil while stopped
}

// process is one run of the consul binary. done is closed when it exits;
// the goroutine that closes it owns the exec.Cmd.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done
}

// Binary returns the consul binary's path from XDSBRIDGE_CONSUL. It skips the
// test with -short, and when the variable is unset it skips it too, or fails
// it when the peers are required (peers.Required).
func Binary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a consul agent; skipped with -short")
	}
	bin := os.Getenv(EnvBinary)
	if bin == "" {
		peers.Missing(t, "consul agent", "%s is not set: run `bash test/tools/consul.sh` and export its output as %s", EnvBinary, EnvBinary)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("consul agent: %s=%q: %v", EnvBinary, bin, err)
	}
	return bin
}

// Start starts a dev agent and registers its Stop with t.Cleanup. It fails
// the test if the agent does not become ready within a minute.
func Start(t testing.TB, opts Options) *Agent {
	t.Helper()
	bin := Binary(t)
	if opts.Datacenter == "" {
		opts.Datacenter = "dc1"
	}
	if opts.NodeName == "" {
		opts.NodeName = "consul-dev"
	}
	dir := t.TempDir()
	a := &Agent{
		Datacenter: opts.Datacenter,
		NodeName:   opts.NodeName,
		t:          t,
		bin:        bin,
		dir:        dir,
		config:     filepath.Join(dir, "agent.hcl"),
		logf:       filepath.Join(dir, "agent.log"),
		tr:         &http.Transport{MaxIdleConnsPerHost: 64},
		nodeMeta:   opts.NodeMeta,
	}
	if opts.ACL {
		a.ManagementToken = newUUID(t)
	}
	t.Cleanup(a.Stop)

	// Ports are probed free and then released, so another process may take
	// one before the agent binds it: retry with fresh ports.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		ports, err := freePorts(6)
		if err != nil {
			t.Fatalf("consul: pick ports: %v", err)
		}
		a.Ports = map[string]int{
			"http": ports[0], "dns": ports[1], "serf_lan": ports[2],
			"serf_wan": ports[3], "server": ports[4], "grpc": ports[5],
		}
		a.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Ports["http"]))
		a.DNSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Ports["dns"]))
		a.SerfWANAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Ports["serf_wan"]))
		if err := os.WriteFile(a.config, []byte(a.hcl(opts)), 0o600); err != nil {
			t.Fatalf("consul: write config: %v", err)
		}
		if lastErr = a.start(); lastErr == nil {
			return a
		}
		a.Stop()
	}
	a.dumpLog()
	t.Fatalf("consul: agent did not start: %v", lastErr)
	return nil
}

// Stop stops the agent and waits for it to exit. Stopping a stopped agent
// does nothing.
func (a *Agent) Stop() {
	a.tr.CloseIdleConnections()
	a.mu.Lock()
	p := a.proc
	a.proc = nil
	a.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Restart stops the agent and starts it again on the same ports. A dev
// agent keeps its state in memory, so the catalog starts empty again.
func (a *Agent) Restart() {
	a.t.Helper()
	a.Stop()
	if err := a.start(); err != nil {
		a.dumpLog()
		a.t.Fatalf("consul: restart: %v", err)
	}
}

// Client returns an API client for the agent, using the management token
// when ACLs are on.
func (a *Agent) Client() *api.Client {
	a.t.Helper()
	return a.ClientWithToken(a.ManagementToken)
}

// ClientWithToken returns an API client for the agent using token.
func (a *Agent) ClientWithToken(token string) *api.Client {
	a.t.Helper()
	c, err := api.NewClient(&api.Config{
		Address:    a.Addr,
		Scheme:     "http",
		Token:      token,
		HttpClient: &http.Client{Transport: a.tr, Timeout: 30 * time.Second},
	})
	if err != nil {
		a.t.Fatalf("consul: client: %v", err)
	}
	return c
}

// ReadToken creates a policy that reads every service and node and returns
// the secret of a new token holding it. It needs Options.ACL.
func (a *Agent) ReadToken() string {
	a.t.Helper()
	if a.ManagementToken == "" {
		a.t.Fatal("consul: ReadToken needs an agent started with ACL")
	}
	c := a.Client()
	name := "read-all-" + newUUID(a.t)[:8]
	pol, _, err := c.ACL().PolicyCreate(&api.ACLPolicy{
		Name:  name,
		Rules: `service_prefix "" { policy = "read" } node_prefix "" { policy = "read" }`,
	}, nil)
	if err != nil {
		a.t.Fatalf("consul: create policy: %v", err)
	}
	tok, _, err := c.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, nil)
	if err != nil {
		a.t.Fatalf("consul: create token: %v", err)
	}
	return tok.SecretID
}

// hcl renders the agent's configuration.
func (a *Agent) hcl(opts Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "datacenter = %q\nnode_name = %q\n", opts.Datacenter, opts.NodeName)
	b.WriteString("log_level = \"warn\"\ndisable_update_check = true\n")
	fmt.Fprintf(&b, "ports {\n  http = %d\n  https = -1\n  dns = %d\n  serf_lan = %d\n  serf_wan = %d\n  server = %d\n  grpc = %d\n  grpc_tls = -1\n}\n",
		a.Ports["http"], a.Ports["dns"], a.Ports["serf_lan"], a.Ports["serf_wan"], a.Ports["server"], a.Ports["grpc"])
	if len(opts.NodeMeta) > 0 {
		keys := make([]string, 0, len(opts.NodeMeta))
		for k := range opts.NodeMeta {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("node_meta {\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "  %q = %q\n", k, opts.NodeMeta[k])
		}
		b.WriteString("}\n")
	}
	if opts.ACL {
		fmt.Fprintf(&b, "acl {\n  enabled = true\n  default_policy = \"deny\"\n  tokens {\n    initial_management = %q\n    agent = %q\n  }\n}\n",
			a.ManagementToken, a.ManagementToken)
	}
	if len(opts.JoinWAN) > 0 {
		b.WriteString("retry_join_wan = [")
		for i, addr := range opts.JoinWAN {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", addr)
		}
		b.WriteString("]\nretry_interval_wan = \"200ms\"\n")
	}
	if opts.ExtraHCL != "" {
		b.WriteString(opts.ExtraHCL)
		b.WriteString("\n")
	}
	return b.String()
}

// start launches the binary and waits until the agent is ready.
func (a *Agent) start() error {
	logFile, err := os.OpenFile(a.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	cmd := exec.Command(a.bin, "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-config-file", a.config)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(os.Environ(), "CONSUL_HTTP_TOKEN=", "CONSUL_HTTP_ADDR=")
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", a.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = cmd.Wait()
		logFile.Close()
	}()
	a.mu.Lock()
	a.proc = p
	a.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	return a.waitReady(ctx, p)
}

// waitReady polls until the agent has a leader and its node is in the
// catalog with the configured metadata (anti-entropy has run), or the
// process exits, or ctx ends.
func (a *Agent) waitReady(ctx context.Context, p *process) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	ready := func() bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.Addr+"/v1/catalog/node/"+a.NodeName, nil)
		if a.ManagementToken != "" {
			req.Header.Set("X-Consul-Token", a.ManagementToken)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		// The lookup answers "null" until the node is registered, which
		// needs a leader; the metadata comes with the agent's own sync.
		var node struct {
			Node *struct{ Meta map[string]string }
		}
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&node) != nil || node.Node == nil {
			return false
		}
		for k, v := range a.nodeMeta {
			if node.Node.Meta[k] != v {
				return false
			}
		}
		return true
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready() {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("agent exited: %v", p.err)
		case <-ctx.Done():
			return errors.New("agent not ready after " + startTimeout.String())
		case <-tick.C:
		}
	}
}

// dumpLog writes the end of the agent's log to the test log.
func (a *Agent) dumpLog() {
	b, err := os.ReadFile(a.logf)
	if err != nil {
		return
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	a.t.Logf("consul agent log (tail):\n%s", b)
}

// freePorts returns n distinct ports free for both TCP and UDP on
// 127.0.0.1 (Serf and DNS listen on both).
func freePorts(n int) ([]int, error) {
	var (
		ports   []int
		closers []func() error
	)
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	for tries := 0; len(ports) < n && tries < 50*n; tries++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			l.Close()
			continue
		}
		closers = append(closers, l.Close, u.Close)
		ports = append(ports, port)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("found only %d of %d free ports", len(ports), n)
	}
	return ports, nil
}

// newUUID returns a random UUID string.
func newUUID(t testing.TB) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("consul: random: %v", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
