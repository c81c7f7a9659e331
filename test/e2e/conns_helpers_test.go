package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/xdsbridge/xdsbridge/test/peers"
	"github.com/xdsbridge/xdsbridge/xds/conns"
)

// startBridgeXDS runs xdsbridge with the given xds section (grpc_address
// included) and the static plugin serving clusters, admin on loopback.
func startBridgeXDS(t *testing.T, grpcAddr, xdsExtra string, clusters map[string][]int) *bridge {
	t.Helper()
	b := &bridge{t: t, dir: t.TempDir(), grpcAddr: grpcAddr, adminAddr: freePort(t), log: &syncBuffer{}, done: make(chan struct{})}
	cfg := fmt.Sprintf("xds:\n  grpc_address: %s\n  rest_address: \"\"\n%sadmin:\n  address: %s\n%s", grpcAddr, xdsExtra, b.adminAddr, staticPlugins)
	b.write("plugins.yaml", cfg)
	b.write("clusters.yaml", clustersFile(clusters))
	b.start()
	return b
}

// shortKeepalive is the tests' xds.keepalive: a vanished client is evicted
// within time + timeout = 2s.
const (
	shortKeepalive = "  keepalive:\n    time: 1s\n    timeout: 1s\n    min_ping_interval: 200ms\n"
	evictionBound  = 2 * time.Second
)

// clients reads /debug/clients.
func (b *bridge) clients() conns.Snapshot {
	b.t.Helper()
	var s conns.Snapshot
	b.getJSON("/debug/clients", &s)
	return s
}

// hasNode reports whether node has a connection in /debug/clients.
func (b *bridge) hasNode(node string) bool {
	for _, n := range b.clients().Nodes {
		if n.ID == node && len(n.Connections) > 0 {
			return true
		}
	}
	return false
}

// metric returns the value of the sample of name whose labels include
// every one of labels (each `key="value"`), and whether there is one.
func (b *bridge) metric(name string, labels ...string) (float64, bool) {
	b.t.Helper()
	resp, err := http.Get("http://" + b.adminAddr + "/metrics")
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	return findSample(resp.Body, name, labels...)
}

func findSample(r io.Reader, name string, labels ...string) (float64, bool) {
	vs := samples(r, name, labels...)
	if len(vs) == 0 {
		return 0, false
	}
	return vs[0], true
}

// sumSamples adds up every sample of name in a /metrics page.
func sumSamples(page []byte, name string) float64 {
	var sum float64
	for _, v := range samples(bytes.NewReader(page), name) {
		sum += v
	}
	return sum
}

// samples returns the values of the samples of name whose labels include
// every one of labels, in the order of the page.
func samples(r io.Reader, name string, labels ...string) []float64 {
	var out []float64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		sp := strings.LastIndexByte(rest, ' ')
		for _, l := range labels {
			if !strings.Contains(rest[:sp], l) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(rest[sp+1:], 64)
		if err != nil {
			continue
		}
		out = append(out, v)
	}
	return out
}

// skipOrFail skips the test, or fails it when the peers are required
// (`make test`): the link-cut tests need root and `ip netns`.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	peers.Missing(t, "network namespaces (root and `ip netns`)", format, args...)
}

var netnsSeq atomic.Int32

// netns is a network namespace joined to the root namespace by a veth
// pair, with a /30 that exists only on the pair: HostIP on the root end,
// NSIP on the namespace end.
type netns struct {
	Name         string
	HostIf, NSIf string
	HostIP, NSIP string
}

func run(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// newNetns creates the namespace and the veth pair; t.Cleanup deletes
// them, whether the test passed or not. It skips the test (fails it under
// `make test`) when not root or without `ip netns`.
func newNetns(t *testing.T) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "creating a network namespace needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skipOrFail(t, "no ip command (iproute2): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := run(ctx, "ip", "netns", "list"); err != nil {
		skipOrFail(t, "ip netns unavailable: %v", err)
	}
	seq := netnsSeq.Add(1)
	tag := fmt.Sprintf("%d%d", os.Getpid()%100000, seq)
	n := &netns{Name: "xdsb-e2e-" + tag, HostIf: "xbh" + tag, NSIf: "xbn" + tag}
	n.HostIP, n.NSIP = freeSlash30(t)

	if err := run(ctx, "ip", "netns", "add", n.Name); err != nil {
		skipOrFail(t, "ip netns add: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = run(ctx, "ip", "link", "del", n.HostIf) // gone with the namespace when its peer was moved
		if err := run(ctx, "ip", "netns", "del", n.Name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	for _, args := range [][]string{
		{"ip", "link", "add", n.HostIf, "type", "veth", "peer", "name", n.NSIf, "netns", n.Name},
		{"ip", "addr", "add", n.HostIP + "/30", "dev", n.HostIf},
		{"ip", "link", "set", n.HostIf, "up"},
		{"ip", "-n", n.Name, "addr", "add", n.NSIP + "/30", "dev", n.NSIf},
		{"ip", "-n", n.Name, "link", "set", n.NSIf, "up"},
		{"ip", "-n", n.Name, "link", "set", "lo", "up"},
	} {
		if err := run(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// cut takes the namespace's end of the link down: packets stop flowing
// both ways, and neither side is told.
func (n *netns) cut(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := run(ctx, "ip", "-n", n.Name, "link", "set", n.NSIf, "down"); err != nil {
		t.Fatal(err)
	}
}

// freeSlash30 picks a /30 in 10.254.0.0/16 that no interface of the root
// namespace has an address in.
func freeSlash30(t *testing.T) (hostIP, nsIP string) {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		base := netipV4(10, 254, byte(rand.IntN(256)), byte(rand.IntN(64)*4))
		_, subnet, _ := net.ParseCIDR(base + "/30")
		clash := false
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && (subnet.Contains(ipn.IP) || ipn.Contains(subnet.IP)) {
				clash = true
			}
		}
		if !clash {
			ip := subnet.IP.To4()
			return netipV4(ip[0], ip[1], ip[2], ip[3]+1), netipV4(ip[0], ip[1], ip[2], ip[3]+2)
		}
	}
	t.Fatal("no free /30 in 10.254.0.0/16")
	return "", ""
}

func netipV4(a, b, c, d byte) string { return fmt.Sprintf("%d.%d.%d.%d", a, b, c, d) }

// freePortOn returns ip:port with a port that was free on ip a moment ago.
func freePortOn(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Environment of the helper client process (TestHelperXDSClient).
const (
	helperAddrEnv = "XDSBRIDGE_E2E_CLIENT_ADDR"
	helperNodeEnv = "XDSBRIDGE_E2E_CLIENT_NODE"
)

// helperClient is a client process: this test binary re-run as
// TestHelperXDSClient, possibly inside a network namespace.
type helperClient struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startHelperClient runs an xDS client process that connects to addr as
// node, subscribes to CDS, ACKs, and then idles — holding its connection
// open, sending nothing and, as grpc-go does by default, no pings. prefix
// runs it through another command (ip netns exec NS). It returns once the
// client has its first response.
func startHelperClient(t *testing.T, addr, node string, prefix ...string) *helperClient {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := append(prefix, self, "-test.run=^TestHelperXDSClient$", "-test.count=1")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), helperAddrEnv+"="+addr, helperNodeEnv+"="+node, "XDSBRIDGE_BIN="+bridgeBin)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helperClient{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "READY") {
				ready <- sc.Text()
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatalf("helper client not ready within 20s; stderr:\n%s", stderr.String())
	}
	return h
}

// TestHelperXDSClient is not a test: it is the client process the
// vanished-client tests start. It is skipped unless they set its
// environment.
func TestHelperXDSClient(t *testing.T) {
	addr, node := os.Getenv(helperAddrEnv), os.Getenv(helperNodeEnv)
	if addr == "" {
		t.Skip("the client process of the vanished-client tests")
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := &core.Node{Id: node, Cluster: "e2e", UserAgentName: "grpc-go"}
	if err := st.Send(&discovery.DiscoveryRequest{Node: n, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	r, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discovery.DiscoveryRequest{Node: n, TypeUrl: resource.ClusterType, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	fmt.Println("READY", r.GetVersionInfo())
	// Idle until the parent closes stdin (or kills this process).
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// h2Client is a raw HTTP/2 client that opens one ADS stream and sends
// PINGs the way Envoy's connection_keepalive does, and records what the
// server sends: its PINGs are answered, GOAWAY frames kept.
type h2Client struct {
	t    *testing.T
	conn net.Conn
	fr   *http2.Framer
	wmu  sync.Mutex

	acks        chan [8]byte
	goaway      chan goaway
	streamEnd   chan struct{}
	response    chan struct{}
	readErr     chan error
	serverPings atomic.Int32
}

func dialH2(t *testing.T, addr string) *h2Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := &h2Client{t: t, conn: conn, fr: http2.NewFramer(conn, conn), acks: make(chan [8]byte, 16),
		goaway: make(chan goaway, 4), streamEnd: make(chan struct{}, 1), response: make(chan struct{}, 16), readErr: make(chan error, 1)}
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.write(func() error { return c.fr.WriteSettings() }); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.readLoop()
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return c
}

func (c *h2Client) write(f func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return f()
}

func (c *h2Client) readLoop() {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.readErr <- err
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.wmu.Lock()
				_ = c.fr.WriteSettingsAck()
				c.wmu.Unlock()
			}
		case *http2.PingFrame:
			if f.IsAck() {
				select {
				case c.acks <- f.Data:
				default:
				}
				continue
			}
			c.serverPings.Add(1)
			c.wmu.Lock()
			_ = c.fr.WritePing(true, f.Data)
			c.wmu.Unlock()
		case *http2.GoAwayFrame:
			select {
			case c.goaway <- goaway{Code: f.ErrCode, Debug: string(f.DebugData())}:
			default:
			}
		case *http2.DataFrame:
			if len(f.Data()) > 0 {
				select {
				case c.response <- struct{}{}:
				default:
				}
				// Give the flow-control window back.
				c.wmu.Lock()
				_ = c.fr.WriteWindowUpdate(0, uint32(len(f.Data())))
				_ = c.fr.WriteWindowUpdate(f.StreamID, uint32(len(f.Data())))
				c.wmu.Unlock()
			}
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				select {
				case c.streamEnd <- struct{}{}:
				default:
				}
			}
		case *http2.RSTStreamFrame:
			select {
			case c.streamEnd <- struct{}{}:
			default:
			}
		}
	}
}

// openADS opens stream 1 as an ADS stream and requests CDS as node.
func (c *h2Client) openADS(authority, node string) {
	c.t.Helper()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":authority", authority},
		{":path", "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"},
		{"content-type", "application/grpc"}, {"te", "trailers"}, {"user-agent", "envoy-like-e2e"},
	} {
		_ = enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	msg, err := proto.Marshal(&discovery.DiscoveryRequest{Node: &core.Node{Id: node, UserAgentName: "envoy"}, TypeUrl: resource.ClusterType})
	if err != nil {
		c.t.Fatal(err)
	}
	frame := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:5], uint32(len(msg)))
	copy(frame[5:], msg)
	if err := c.write(func() error {
		return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	}); err != nil {
		c.t.Fatal(err)
	}
	if err := c.write(func() error { return c.fr.WriteData(1, false, frame) }); err != nil {
		c.t.Fatal(err)
	}
}

// sendPing sends a PING without waiting for its ACK.
func (c *h2Client) sendPing() ([8]byte, error) {
	var data [8]byte
	binary.BigEndian.PutUint64(data[:], rand.Uint64())
	return data, c.write(func() error { return c.fr.WritePing(false, data) })
}

// ping sends a PING and reports whether its ACK came within timeout.
func (c *h2Client) ping(timeout time.Duration) bool {
	data, err := c.sendPing()
	if err != nil {
		return false
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case got := <-c.acks:
			if got == data {
				return true
			}
		case <-t.C:
			return false
		}
	}
}

// goaway is a GOAWAY frame received.
type goaway struct {
	Code  http2.ErrCode
	Debug string
}

// sawGoaway returns a GOAWAY frame received so far, if any.
func (c *h2Client) sawGoaway() (goaway, bool) {
	select {
	case f := <-c.goaway:
		return f, true
	default:
		return goaway{}, false
	}
}

// httpGet fetches an admin path and returns its status code.
func httpGet(b *bridge, path string) (int, error) {
	resp, err := http.Get("http://" + b.adminAddr + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}
