package deploy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// bridgeBin is the xdsbridge binary: $XDSBRIDGE_BIN, or one TestMain builds.
var bridgeBin string

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	bridgeBin = os.Getenv("XDSBRIDGE_BIN")
	if bridgeBin == "" {
		dir, err := os.MkdirTemp("", "xdsbridge-deploy")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		bridgeBin = filepath.Join(dir, "xdsbridge")
		// In the main module, with its go.mod.
		cmd := exec.Command("go", "build", "-o", bridgeBin, "./cmd/xdsbridge")
		cmd.Dir = repo
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build xdsbridge:", err)
			return 1
		}
	}
	return m.Run()
}

// required reports whether a missing tool fails the test rather than skips it.
func required() bool { return os.Getenv("XDSBRIDGE_REQUIRE_PEERS") == "1" }

// missing skips the test, or fails it when the tools are required.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if required() {
		t.Fatalf("%s (XDSBRIDGE_REQUIRE_PEERS=1)", msg)
	}
	t.Skip(msg)
}

// tool returns the path of a tool: $env, else name on PATH.
func tool(t *testing.T, env, name string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, "%s not found: set $%s or install it (test/tools/ has a script per tool)", name, env)
	}
	return p
}

// run runs a command and returns its combined output; it fails the test when
// the command fails.
func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return out
}

// repo is the repository's root, relative to this package.
const repo = ".."

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// bridge is a running xdsbridge serving the repository's seed example.
type bridge struct {
	grpcAddr, adminAddr string
}

// serveSeed runs bin on a plugins.yaml that serves examples/static/seed.yaml,
// on free loopback ports, until the test ends, and waits for /readyz.
func serveSeed(t *testing.T, bin string) *bridge {
	t.Helper()
	dir := t.TempDir()
	b := &bridge{grpcAddr: freePort(t), adminAddr: freePort(t)}
	if err := os.WriteFile(filepath.Join(dir, "seed.yaml"), readFile(t, filepath.Join(repo, "examples", "static", "seed.yaml")), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`xds:
  grpc_address: %s
  rest_address: ""
admin:
  address: %s
plugins:
  - name: seed-example
    type: static
    config:
      path: seed.yaml
`, b.grpcAddr, b.adminAddr)
	if err := os.WriteFile(filepath.Join(dir, "plugins.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	runBridge(t, bin, dir, b.adminAddr, "/readyz")
	return b
}

// runBridge runs `bin run --config plugins.yaml` in dir until the test ends
// (then stops it with SIGTERM and expects exit status 0), and waits until
// GET path on adminAddr answers 200.
func runBridge(t *testing.T, bin, dir, adminAddr, path string) {
	t.Helper()
	// Written by the process's one copying goroutine (Stdout and Stderr are
	// the same writer); read only once the process has exited.
	log := &bytes.Buffer{}
	cmd := exec.Command(bin, "run", "--config", "plugins.yaml")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
			if code := cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("xdsbridge exited with %d after SIGTERM:\n%s", code, log)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("xdsbridge did not stop within 15s of SIGTERM")
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; waitABit() {
		select {
		case <-done:
			t.Fatalf("xdsbridge exited early:\n%s", log)
		default:
		}
		if resp, err := http.Get("http://" + adminAddr + path); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("GET %s did not answer 200 within 30s:\n%s", path, log)
		}
	}
}

// adsStream is one ADS stream of a client, state of the world.
type adsStream struct {
	t      *testing.T
	stream grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]
	node   *corev3.Node
}

// dialClient connects to an xDS server for the rest of the test; the
// context bounds the streams opened on it.
func dialClient(t *testing.T, addr string) (discoveryv3.AggregatedDiscoveryServiceClient, context.Context, context.CancelFunc) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return discoveryv3.NewAggregatedDiscoveryServiceClient(cc), ctx, cancel
}

func dialADS(t *testing.T, addr, nodeID string) *adsStream {
	t.Helper()
	client, ctx, _ := dialClient(t, addr)
	s, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &adsStream{t: t, stream: s, node: nodeFor(nodeID)}
}

// nodeFor is the node a test client says it is.
func nodeFor(id string) *corev3.Node {
	return &corev3.Node{Id: id, Cluster: "deploy-test", UserAgentName: "envoy"}
}

// request sends a request for typeURL; prev, when set, is the response it
// answers: ACKed, or NACKed with errDetail.
func (a *adsStream) request(typeURL string, names []string, prev *discoveryv3.DiscoveryResponse, errDetail string) *discoveryv3.DiscoveryResponse {
	a.t.Helper()
	req := &discoveryv3.DiscoveryRequest{Node: a.node, TypeUrl: typeURL, ResourceNames: names}
	if prev != nil {
		req.VersionInfo, req.ResponseNonce = prev.GetVersionInfo(), prev.GetNonce()
	}
	if errDetail != "" {
		req.VersionInfo = "" // a NACK carries the last version accepted: none
		req.ErrorDetail = &statuspb.Status{Code: 3, Message: errDetail}
	}
	if err := a.stream.Send(req); err != nil {
		a.t.Fatalf("send %s: %v", typeURL, err)
	}
	if prev != nil {
		return nil
	}
	resp, err := a.stream.Recv()
	if err != nil {
		a.t.Fatalf("receive %s: %v", typeURL, err)
	}
	if resp.GetTypeUrl() != typeURL {
		a.t.Fatalf("got a response of %s, want %s", resp.GetTypeUrl(), typeURL)
	}
	return resp
}

// fetchSeed checks that the client gets the seed example's cluster over CDS
// and its endpoint over EDS, ACKs both, and returns the responses.
func fetchSeed(t *testing.T, a *adsStream) (cds, eds *discoveryv3.DiscoveryResponse) {
	t.Helper()
	cds = a.request(resource.ClusterType, nil, nil, "")
	var c clusterv3.Cluster
	if len(cds.GetResources()) != 1 || cds.GetResources()[0].UnmarshalTo(&c) != nil || c.GetName() != "some_service" {
		t.Fatalf("CDS: want cluster some_service, got %d resources", len(cds.GetResources()))
	}
	a.request(resource.ClusterType, nil, cds, "")
	eds = a.request(resource.EndpointType, []string{"some_service"}, nil, "")
	var cla endpointv3.ClusterLoadAssignment
	if len(eds.GetResources()) != 1 || eds.GetResources()[0].UnmarshalTo(&cla) != nil {
		t.Fatalf("EDS: want some_service's endpoints, got %d resources", len(eds.GetResources()))
	}
	ep := cla.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if ep.GetAddress() != "127.0.0.1" || ep.GetPortValue() != 1234 {
		t.Fatalf("EDS some_service: endpoint %s:%d, want 127.0.0.1:1234", ep.GetAddress(), ep.GetPortValue())
	}
	a.request(resource.EndpointType, []string{"some_service"}, eds, "")
	return cds, eds
}

// waitABit is the pause between two polls.
func waitABit() { time.Sleep(50 * time.Millisecond) }
