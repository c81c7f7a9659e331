package dns

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/test/peers"
)

// TestConsulDNS bridges Consul's DNS interface: <service>.service.consul SRV
// answers whose targets are <hex>.addr.<dc>.consul (or <node>.node.<dc>.consul)
// names with their A records in the additional section.
//
// It runs `consul agent -dev` from $XDSBRIDGE_CONSUL (built by
// test/tools/consul.sh) and is skipped when that is unset, unless the peers
// are required (`make test`), where it fails.
func TestConsulDNS(t *testing.T) {
	t.Parallel()
	agent := startConsul(t)
	const name = "web.service.consul."
	cluster := ClusterName(name)

	agent.register(t, `{"ID": "web-1", "Name": "web", "Address": "10.1.0.1", "Port": 8080, "Weights": {"Passing": 3, "Warning": 1}}`)
	agent.register(t, `{"ID": "web-2", "Name": "web", "Address": "10.1.0.2", "Port": 8081}`)

	// The premise: Consul puts the targets' addresses in the additional
	// section, so no further query is needed.
	q := new(mdns.Msg)
	q.SetQuestion(name, mdns.TypeSRV)
	r, _, err := (&mdns.Client{Timeout: 2 * time.Second}).Exchange(q, agent.dns)
	if err != nil {
		t.Fatalf("query consul: %v", err)
	}
	if len(r.Answer) != 2 || len(ipsOf(r.Extra)) != 2 || !strings.HasSuffix(r.Answer[0].(*mdns.SRV).Target, ".addr.dc1.consul.") {
		t.Fatalf("consul's answer is not what the test expects:\n%s", r)
	}

	src := newSource(t, testConfig([]string{agent.dns}, name), nil)
	h := run(t, src)
	h.waitEndpoints(cluster, "10.1.0.1:8080 p0 w3", "10.1.0.2:8081 p0 w1")
	if got := h.view.clusters[cluster][0].Hostname; got != "0a010001.addr.dc1.consul" {
		t.Errorf("hostname = %q", got)
	}
	if h.view.status.State != sdk.Connected {
		t.Fatalf("status %+v", h.view.status)
	}

	// A second instance at the same address (same target, other port), and
	// one without an address of its own (a node-name target).
	agent.register(t, `{"ID": "web-3", "Name": "web", "Address": "10.1.0.1", "Port": 9090}`)
	agent.register(t, `{"ID": "web-4", "Name": "web", "Port": 7070}`)
	h.waitEndpoints(cluster, "10.1.0.1:8080 p0 w3", "10.1.0.1:9090 p0 w1", "10.1.0.2:8081 p0 w1", "127.0.0.1:7070 p0 w1")

	agent.deregister(t, "web-2")
	agent.deregister(t, "web-4")
	h.waitEndpoints(cluster, "10.1.0.1:8080 p0 w3", "10.1.0.1:9090 p0 w1")

	// No instance left: Consul answers NXDOMAIN and the cluster is empty.
	agent.deregister(t, "web-1")
	agent.deregister(t, "web-3")
	h.waitEndpoints(cluster)
	if h.view.status.State != sdk.Connected {
		t.Fatalf("status %+v", h.view.status)
	}
}

type consulAgent struct {
	http   string // 127.0.0.1:port
	dns    string // 127.0.0.1:port
	client *http.Client
}

func startConsul(t *testing.T) *consulAgent {
	t.Helper()
	bin := os.Getenv("XDSBRIDGE_CONSUL")
	if bin == "" {
		peers.Missing(t, "consul agent", "XDSBRIDGE_CONSUL is not set (bash test/tools/consul.sh prints the binary's path)")
	}
	ports := freePorts(t, 5)
	dir := t.TempDir()
	conf := filepath.Join(dir, "agent.hcl")
	hcl := fmt.Sprintf(`node_name = "xdsbridge-test"
log_level = "warn"
ports {
  http     = %d
  dns      = %d
  serf_lan = %d
  serf_wan = %d
  server   = %d
  grpc     = -1
  grpc_tls = -1
}
`, ports[0], ports[1], ports[2], ports[3], ports[4])
	if err := os.WriteFile(conf, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &consulAgent{
		http: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		dns:  net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
		// No keep-alive: no connection outlives a request.
		client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	}

	var out logBuffer
	cmd := exec.Command(bin, "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1", "-config-file", conf)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start consul: %v", err)
	}
	var wg sync.WaitGroup
	exited := make(chan struct{})
	wg.Go(func() { _ = cmd.Wait(); close(exited) })
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		wg.Wait()
		if t.Failed() {
			t.Logf("consul output:\n%s", out.String())
		}
	})

	// Ready when it has a leader and its DNS interface answers.
	deadline := time.Now().Add(30 * time.Second)
	q := new(mdns.Msg)
	q.SetQuestion("consul.service.consul.", mdns.TypeSRV)
	for {
		leader, _ := a.get("/v1/status/leader")
		if len(leader) > 2 {
			r, _, err := (&mdns.Client{Timeout: 200 * time.Millisecond}).Exchange(q, a.dns)
			if err == nil && r.Rcode == mdns.RcodeSuccess && len(r.Answer) > 0 {
				return a
			}
		}
		select {
		case <-exited:
			t.Fatalf("consul exited:\n%s", out.String())
		case <-time.After(50 * time.Millisecond): // poll interval, bounded by deadline
		}
		if time.Now().After(deadline) {
			t.Fatalf("consul not ready within 30s:\n%s", out.String())
		}
	}
}

func (a *consulAgent) get(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.http+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	return b.String(), err
}

func (a *consulAgent) put(t *testing.T, path, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+a.http+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		t.Fatalf("PUT %s: %s: %s", path, resp.Status, b.String())
	}
}

func (a *consulAgent) register(t *testing.T, service string) {
	t.Helper()
	if !json.Valid([]byte(service)) {
		t.Fatalf("invalid service JSON %s", service)
	}
	a.put(t, "/v1/agent/service/register", service)
}

func (a *consulAgent) deregister(t *testing.T, id string) {
	t.Helper()
	a.put(t, "/v1/agent/service/deregister/"+id, "")
}

// freePorts returns n distinct ports of 127.0.0.1, each free for TCP and
// UDP when it was chosen.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var closers []func() error
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100 {
			t.Fatal("no free ports")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			continue
		}
		closers = append(closers, l.Close)
		port := l.Addr().(*net.TCPAddr).Port
		if slices.Contains(ports, port) {
			continue
		}
		p, err := net.ListenPacket("udp", l.Addr().String())
		if err != nil {
			continue
		}
		closers = append(closers, p.Close)
		ports = append(ports, port)
	}
	return ports
}
