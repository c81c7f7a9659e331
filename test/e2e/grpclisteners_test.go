package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/xdsbridge/xdsbridge/test/consul"
	"github.com/xdsbridge/xdsbridge/test/dnsserver"
)

// grpcListenersOn is the xds section that turns generated gRPC listeners
// on, for startBridgeWithXDS.
const grpcListenersOn = "  grpc_listeners:\n    enabled: true\n"

// newBridge is a bridge not yet started, with free ports.
func newBridge(t *testing.T) *bridge {
	return &bridge{t: t, dir: t.TempDir(), grpcAddr: freePort(t), restAddr: freePort(t), adminAddr: freePort(t), log: &syncBuffer{}, done: make(chan struct{})}
}

// startBridgeWithXDS is startBridge with xdsExtra added to the xds section
// of plugins.yaml.
func startBridgeWithXDS(t *testing.T, xdsExtra, plugins string) *bridge {
	t.Helper()
	b := newBridge(t)
	b.write("plugins.yaml", fmt.Sprintf("xds:\n  grpc_address: %s\n  rest_address: %s\n%sadmin:\n  address: %s\n%s",
		b.grpcAddr, b.restAddr, xdsExtra, b.adminAddr, plugins))
	b.start()
	return b
}

// grpcDialer dials xds:/// targets through grpc-go's own xDS client, with
// examples/grpc/bootstrap.json aimed at the bridge: no listener of its own.
type grpcDialer struct {
	t   *testing.T
	opt grpc.DialOption
}

// grpcNodeID is the node id in examples/grpc/bootstrap.json.
const grpcNodeID = "grpc-client-1"

func newGRPCDialer(t *testing.T, b *bridge) *grpcDialer {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "grpc", "bootstrap.json"))
	if err != nil {
		t.Fatal(err)
	}
	bootstrap := strings.Replace(string(data), `"127.0.0.1:5678"`, strconv.Quote(b.grpcAddr), 1)
	if !strings.Contains(bootstrap, grpcNodeID) || bootstrap == string(data) {
		t.Fatalf("examples/grpc/bootstrap.json has changed: update the test\n%s", data)
	}
	res, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	return &grpcDialer{t: t, opt: grpc.WithResolvers(res)}
}

// dial returns a client for xds:///<name>.
func (d *grpcDialer) dial(name string) *grpcTarget {
	d.t.Helper()
	cc, err := grpc.NewClient("xds:///"+name, d.opt, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { cc.Close() })
	return &grpcTarget{t: d.t, name: name, client: testgrpc.NewTestServiceClient(cc)}
}

type grpcTarget struct {
	t      *testing.T
	name   string
	client testgrpc.TestServiceClient
}

// call makes one RPC and returns the backend that answered, or the error.
func (g *grpcTarget) call() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := g.client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if err != nil {
		return "", err
	}
	return r.GetHostname(), nil
}

// reaches waits until the RPCs to the target have reached every one of
// backends, and no other.
func (g *grpcTarget) reaches(within time.Duration, backends ...string) {
	g.t.Helper()
	seen := map[string]bool{}
	var last error
	deadline := time.Now().Add(within)
	for len(seen) < len(backends) {
		got, err := g.call()
		switch {
		case err != nil:
			last = err
		case !slices.Contains(backends, got):
			g.t.Fatalf("xds:///%s: an RPC reached %q, want only %v", g.name, got, backends)
		default:
			seen[got] = true
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("xds:///%s: within %v, RPCs reached %v, want %v (last error: %v)", g.name, within, seen, backends, last)
		}
		if err != nil {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// only waits until n RPCs in a row reach backend.
func (g *grpcTarget) only(within time.Duration, backend string) {
	g.t.Helper()
	const n = 10
	row := 0
	eventually(g.t, within, fmt.Sprintf("%d RPCs in a row to xds:///%s to reach %s", n, g.name, backend), func() bool {
		got, err := g.call()
		if err == nil && got == backend {
			row++
		} else {
			row = 0
		}
		return row >= n
	})
}

// fails waits until an RPC fails with the xDS resolver's error, and
// returns it.
func (g *grpcTarget) fails(within time.Duration) error {
	g.t.Helper()
	var last error
	eventually(g.t, within, fmt.Sprintf("RPCs to xds:///%s to fail with the resolver's error", g.name), func() bool {
		_, last = g.call()
		return last != nil && status.Code(last) == codes.Unavailable && strings.Contains(last.Error(), "xDS node id: "+grpcNodeID) && strings.Contains(last.Error(), strconv.Quote(g.name))
	})
	return last
}

func registerGRPC(t *testing.T, c *api.Client, service, id string, port int) {
	t.Helper()
	err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: id, Name: service, Address: "127.0.0.1", Port: port,
		Check: &api.AgentServiceCheck{CheckID: "check-" + id, TTL: "10m", Status: api.HealthPassing},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestGRPCListenersConsul: with the walk-through of examples/grpc (its
// plugins.yaml for Consul and its bootstrap) and no static file, grpc-go's
// own xDS client dials every service registered in a real Consul agent by
// name; health, new services and deregistration follow.
func TestGRPCListenersConsul(t *testing.T) {
	agent := consul.Start(t, consul.Options{})
	c := agent.Client()
	b1, b2, b3 := startBackend(t, "b1"), startBackend(t, "b2"), startBackend(t, "b3")
	registerGRPC(t, c, "greeter", "greeter-1", b1.port)
	registerGRPC(t, c, "greeter", "greeter-2", b2.port)

	// The walk-through's plugins.yaml, on this test's addresses.
	example, err := os.ReadFile(filepath.Join("..", "..", "examples", "grpc", "consul.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b := newBridge(t)
	cfg := strings.NewReplacer("127.0.0.1:5678", b.grpcAddr, "127.0.0.1:5679", b.restAddr,
		"127.0.0.1:9902", b.adminAddr, "127.0.0.1:8500", agent.Addr).Replace(string(example))
	b.write("plugins.yaml", cfg)
	b.start()
	d := newGRPCDialer(t, b)

	greeter := d.dial("greeter")
	greeter.reaches(30*time.Second, "b1", "b2")

	// A health check turning critical takes its backend out of rotation.
	if err := c.Agent().UpdateTTL("check-greeter-2", "down", api.HealthCritical); err != nil {
		t.Fatal(err)
	}
	greeter.only(20*time.Second, "b1")
	if err := c.Agent().UpdateTTL("check-greeter-2", "up", api.HealthPassing); err != nil {
		t.Fatal(err)
	}
	greeter.reaches(20*time.Second, "b1", "b2")

	// A service registered later is dialable with no change to the
	// configuration, on a channel opened before it existed.
	later := d.dial("later")
	if _, err := later.call(); err == nil {
		t.Fatal("an RPC to xds:///later succeeded before the service was registered")
	}
	registerGRPC(t, c, "later", "later-1", b3.port)
	later.reaches(30*time.Second, "b3")

	// Deregistered, it fails its RPCs with the resolver's error; greeter
	// carries on.
	if err := c.Agent().ServiceDeregister("later-1"); err != nil {
		t.Fatal(err)
	}
	t.Logf("after deregistration: %v", later.fails(20*time.Second))
	greeter.reaches(5*time.Second, "b1", "b2")

	// The overlay's route settings are on the served route.
	var res struct {
		Resources []struct {
			Type     string         `json:"type"`
			Name     string         `json:"name"`
			Resource map[string]any `json:"resource"`
		} `json:"resources"`
	}
	b.getJSON("/debug/resources?type=RouteConfiguration", &res)
	found := false
	for _, r := range res.Resources {
		if r.Name == "greeter" {
			found = true
			if s := fmt.Sprint(r.Resource); !strings.Contains(s, "maxStreamDuration:30s") || !strings.Contains(s, "numRetries:2") {
				t.Errorf("greeter's route lacks its overlay's settings: %s", s)
			}
		}
	}
	if !found {
		t.Fatalf("no route greeter in /debug/resources: %+v", res)
	}
}

// TestGRPCListenersDNS: the same with the dns plugin against BIND: a name
// whose SRV records point at gRPC backends is dialable; a removed record
// takes its backend out; a name that resolves only later becomes dialable;
// and one whose records go fails its RPCs.
func TestGRPCListenersDNS(t *testing.T) {
	if testing.Short() {
		t.Skip("needs named")
	}
	b1, b2, b3 := startBackend(t, "b1"), startBackend(t, "b2"), startBackend(t, "b3")
	srv := dnsserver.Start(t, dnsserver.Config{Records: []string{
		fmt.Sprintf("_grpc._tcp.greeter 1 IN SRV 10 5 %d a", b1.port),
		fmt.Sprintf("_grpc._tcp.greeter 1 IN SRV 10 5 %d a", b2.port),
		"a 1 IN A 127.0.0.1",
	}})
	b := startBridgeWithXDS(t, grpcListenersOn, fmt.Sprintf(`plugins:
  - name: dns
    type: dns
    config:
      servers: [%s]
      min_refresh: 100ms
      max_refresh: 1s
      max_retry_interval: 500ms
      names:
        - {name: _grpc._tcp.greeter.%s, cluster: greeter}
        - {name: _grpc._tcp.later.%s, cluster: later}
`, srv.Addr(), srv.Zone(), srv.Zone()))
	d := newGRPCDialer(t, b)

	greeter := d.dial("greeter")
	greeter.reaches(30*time.Second, "b1", "b2")

	// A removed record takes its backend out of rotation.
	srv.Replace(t, "_grpc._tcp.greeter", dns.TypeSRV, fmt.Sprintf("_grpc._tcp.greeter 1 IN SRV 10 5 %d a", b1.port))
	greeter.only(20*time.Second, "b1")

	// A name that does not resolve yet is dialable once it does.
	later := d.dial("later")
	if _, err := later.call(); err == nil {
		t.Fatal("an RPC to xds:///later succeeded before its records existed")
	}
	srv.Add(t, fmt.Sprintf("_grpc._tcp.later 1 IN SRV 10 5 %d a", b3.port))
	later.reaches(30*time.Second, "b3")

	// Its records gone, its RPCs fail.
	srv.Replace(t, "_grpc._tcp.later", dns.TypeSRV)
	eventually(t, 20*time.Second, "RPCs to xds:///later to fail", func() bool {
		_, err := later.call()
		return status.Code(err) == codes.Unavailable
	})
	greeter.only(5*time.Second, "b1")
}

// TestGRPCListenersStatic: with the static plugin, a passthrough listener
// named like a cluster's generated one is served instead of it (shown in
// /debug/resources, logged once), the other clusters keep their generated
// listeners, route settings come from the static file's route key, and
// the generated resources are served over REST and delta xDS too.
func TestGRPCListenersStatic(t *testing.T) {
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	files := func(port1, port2 int) string {
		return fmt.Sprintf(`clusters:
  - name: backend
    endpoints: [{address: 127.0.0.1, port: %d}]
    route:
      retry_policy: {retry_on: unavailable, num_retries: 2}
  - name: other
    endpoints: [{address: 127.0.0.1, port: %d}]
resources:
`, port1, port2) + apiListenerYAML("other.svc", "backend")
	}
	b := newBridge(t)
	b.write("clusters.yaml", files(b1.port, b2.port))
	b.write("plugins.yaml", fmt.Sprintf("xds:\n  grpc_address: %s\n  rest_address: %s\n  grpc_listeners: {enabled: true, name: \"{{.Cluster}}.svc\"}\nadmin:\n  address: %s\n%s",
		b.grpcAddr, b.restAddr, b.adminAddr, staticPlugins))
	b.start()
	d := newGRPCDialer(t, b)

	// The template names the targets; other.svc is the passthrough
	// listener, which routes to backend.
	backend := d.dial("backend.svc")
	backend.reaches(30*time.Second, "b1")
	d.dial("other.svc").only(20*time.Second, "b1")

	var res struct {
		Resources []struct {
			Type     string         `json:"type"`
			Name     string         `json:"name"`
			Replaces string         `json:"replaces"`
			Resource map[string]any `json:"resource"`
		} `json:"resources"`
	}
	b.getJSON("/debug/resources", &res)
	got := map[string]string{}
	for _, r := range res.Resources {
		got[r.Type[strings.LastIndex(r.Type, ".")+1:]+" "+r.Name] = r.Replaces
	}
	want := map[string]string{
		"Listener backend.svc":           "",
		"Listener other.svc":             `the generated gRPC Listener for cluster "other"`,
		"RouteConfiguration backend.svc": "",
		"RouteConfiguration other.svc":   "",
	}
	for k, v := range want {
		if r, ok := got[k]; !ok || r != v {
			t.Errorf("/debug/resources: %s: present %v, replaces %q; want replaces %q", k, ok, r, v)
		}
	}
	// Both clusters change: the collision is not logged again.
	b.write("clusters.yaml", files(b2.port, b1.port))
	backend.only(20*time.Second, "b2")
	if n := strings.Count(b.log.String(), "replaces a generated gRPC one"); n != 1 {
		t.Errorf("the collision was logged %d times, want once", n)
	}

	// REST serves the generated route, with the static file's settings.
	body, _ := protojson.Marshal(&discovery.DiscoveryRequest{Node: &core.Node{Id: "rest"}, ResourceNames: []string{"backend.svc"}})
	resp, err := http.Post("http://"+b.restAddr+"/v3/discovery:routes", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var dr discovery.DiscoveryResponse
	if err := protojson.Unmarshal(data, &dr); err != nil || len(dr.GetResources()) != 1 {
		t.Fatalf("REST routes: %v, %s", err, data)
	}
	var rc routev3.RouteConfiguration
	if err := dr.GetResources()[0].UnmarshalTo(&rc); err != nil {
		t.Fatal(err)
	}
	if n := rc.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetRetryPolicy().GetNumRetries().GetValue(); n != 2 {
		t.Errorf("REST route backend.svc: num_retries %d, want 2 (from the static file)", n)
	}

	// Delta xDS serves the generated listener.
	ds := newDelta(t, dial(t, b.grpcAddr), "delta-grpc")
	ds.send(&discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: "delta-grpc"}, TypeUrl: resource.ListenerType, ResourceNamesSubscribe: []string{"backend.svc"}})
	r := ds.recv(10 * time.Second)
	if len(r.GetResources()) != 1 || r.GetResources()[0].GetName() != "backend.svc" {
		t.Fatalf("delta LDS: %v", r)
	}
}
