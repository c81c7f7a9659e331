package xds

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/internal/publish"
	"github.com/xdsbridge/xdsbridge/xds/conns"
	"github.com/xdsbridge/xdsbridge/xds/store"
)

// env is a running Server with its registry, metrics and REST listener,
// open for clients.
type env struct {
	t        *testing.T
	srv      *Server
	pub      *publish.Publisher
	clients  *conns.Registry
	metrics  *prometheus.Registry
	logs     *lockedBuffer
	grpcAddr string
	restAddr string
	cancel   context.CancelFunc
	done     chan error
}

// startEnv runs a Server with opts on loopback until the test ends (or
// stop is called). Logger, Store, addresses, Clients, Clock and Metrics
// are filled in when opts leaves them empty.
func startEnv(t *testing.T, opts Options) *env {
	t.Helper()
	logs := &lockedBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Store == nil {
		opts.Store = store.New(opts.Logger)
	}
	if opts.GRPCAddress == "" {
		opts.GRPCAddress = "127.0.0.1:0"
	}
	if opts.RESTAddress == "" {
		opts.RESTAddress = "127.0.0.1:0"
	}
	if opts.Clients == nil {
		opts.Clients = conns.New(conns.Options{History: 100, RESTIdle: time.Minute})
	}
	clock, _ := opts.Clock.(*publish.PushClock)
	if opts.Clock == nil {
		clock = publish.NewPushClock()
		opts.Clock = clock
	}
	reg := prometheus.NewRegistry()
	opts.Metrics = reg
	e := &env{t: t, srv: New(opts), clients: opts.Clients, metrics: reg, logs: logs, done: make(chan error, 1)}
	e.pub = &publish.Publisher{Store: opts.Store, Logger: opts.Logger, Clock: clock}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.done <- e.srv.Run(ctx) }()
	t.Cleanup(func() {
		if err := e.stop(10 * time.Second); err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	actx, acancel := context.WithTimeout(ctx, 5*time.Second)
	defer acancel()
	g, r, err := e.srv.Addrs(actx)
	if err != nil {
		t.Fatal(err)
	}
	e.grpcAddr, e.restAddr = g.String(), r.String()
	e.srv.Open()
	return e
}

// stop cancels Run and waits for it, at most within.
func (e *env) stop(within time.Duration) error {
	e.cancel()
	select {
	case err, ok := <-e.done:
		if !ok {
			return nil
		}
		close(e.done)
		return err
	case <-time.After(within):
		e.t.Fatalf("Run did not return within %v of cancel", within)
		return nil
	}
}

func (e *env) publish(clusters ...*aggregator.Cluster) {
	e.pub.Publish(context.Background(), &aggregator.Change{Clusters: clusters})
}

func (e *env) dial(opts ...grpc.DialOption) *grpc.ClientConn {
	e.t.Helper()
	cc, err := grpc.NewClient(e.grpcAddr, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return cc
}

func (e *env) ads(cc *grpc.ClientConn) discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// rest POSTs req to the REST endpoint of its type and returns the status
// and decoded response (nil unless 200).
func (e *env) rest(path string, req *discovery.DiscoveryRequest) (int, *discovery.DiscoveryResponse) {
	e.t.Helper()
	b, err := protojson.Marshal(req)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+e.restAddr+path, bytes.NewReader(b))
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	out := &discovery.DiscoveryResponse{}
	if err := protojson.Unmarshal(body, out); err != nil {
		e.t.Fatalf("decode REST response: %v\n%s", err, body)
	}
	// The body is what protojson, as go-control-plane's gateway calls it,
	// makes of the response, byte for byte.
	if want, err := restMarshal.Marshal(out); err != nil || !bytes.Equal(body, want) {
		e.t.Fatalf("REST body is not protojson's encoding of its response (%v)\n got %s\nwant %s", err, body, want)
	}
	return resp.StatusCode, out
}

// counter returns the value of a counter or gauge with labels.
func (e *env) value(c prometheus.Collector) float64 {
	e.t.Helper()
	return testutil.ToFloat64(c)
}

// eventually polls cond until it holds or within passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recvSotw receives the next response within d.
func recvSotw(t testing.TB, st discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient, d time.Duration) *discovery.DiscoveryResponse {
	t.Helper()
	type result struct {
		r   *discovery.DiscoveryResponse
		err error
	}
	ch := make(chan result, 1)
	go func() {
		r, err := st.Recv()
		ch <- result{r, err}
	}()
	select {
	case res := <-ch:
		if res.err != nil {
			t.Fatalf("recv: %v", res.err)
		}
		return res.r
	case <-time.After(d):
		t.Fatalf("no response within %v", d)
	}
	return nil
}
