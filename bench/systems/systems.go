// Package systems holds the control planes the benchmark compares, behind
// one interface: xdsbridge itself fed by a synthetic source plugin
// (Bridge), go-control-plane's SnapshotCache with one shared snapshot
// rebuilt per change (Snapshot), its LinearCache behind a MuxCache
// (Linear), and a floor that marshals each resource once and writes the
// same bytes to every stream (Floor).
package systems

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/xdsbridge/xdsbridge/bench/fleet"
	"github.com/xdsbridge/xdsbridge/bench/workload"
)

// System is a control plane under test.
type System interface {
	// Name is a short label: xdsbridge, snapshot, linear or floor.
	Name() string
	// Start serves the state init built in m, and returns once clients
	// can connect and be served. ctx bounds the start only.
	Start(ctx context.Context, m *workload.Model, init workload.Op) (fleet.Target, error)
	// Apply makes op known: it has been applied to m, where it changed (or
	// created) changed and removed removed. It returns once the system has
	// taken the change, not once clients have it.
	Apply(ctx context.Context, op workload.Op, m *workload.Model, changed, removed []workload.Ref) error
	// Stop stops the system and waits for everything it started.
	Stop() error
	// ChildCPU is the CPU time used so far by processes the system started
	// (xdsbridge's plugin), to count with this process's own.
	ChildCPU() time.Duration
}

// grpcServer returns a gRPC server with the settings xds.Server uses.
func grpcServer(opts ...grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append([]grpc.ServerOption{
		grpc.MaxConcurrentStreams(1 << 20),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
		// Stop returns once every stream handler has, so that nothing of
		// one system is left when the next is measured.
		grpc.WaitForHandlers(true),
	}, opts...)...)
}

// gcp serves a go-control-plane cache the way xds.Server serves the store:
// the same server code and gRPC settings, REST when the cache implements
// Fetch.
type gcp struct {
	logger *slog.Logger
	cancel context.CancelFunc
	gs     *grpc.Server
	hs     *http.Server
	wg     sync.WaitGroup
}

func serveGCP(cache cachev3.Cache, rest bool, logger *slog.Logger) (*gcp, fleet.Target, error) {
	ctx, cancel := context.WithCancel(context.Background())
	g := &gcp{logger: logger, cancel: cancel}
	xs := serverv3.NewServer(ctx, cache, nil, sotw.WithOrderedADS(), sotw.WithLogger(gcpLogger{logger}))
	g.gs = grpcServer()
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g.gs, xs)
	clusterservice.RegisterClusterDiscoveryServiceServer(g.gs, xs)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g.gs, xs)
	var lc net.ListenConfig
	gl, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		return nil, fleet.Target{}, fmt.Errorf("listen grpc: %w", err)
	}
	target := fleet.Target{GRPC: gl.Addr().String()}
	g.wg.Go(func() { _ = g.gs.Serve(gl) })
	if rest {
		hl, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
		if err != nil {
			g.stop()
			return nil, fleet.Target{}, fmt.Errorf("listen rest: %w", err)
		}
		target.REST = hl.Addr().String()
		g.hs = &http.Server{Handler: restHandler(&serverv3.HTTPGateway{Server: xs}), ReadHeaderTimeout: 10 * time.Second}
		g.wg.Go(func() { _ = g.hs.Serve(hl) })
	}
	return g, target, nil
}

func (g *gcp) stop() {
	g.cancel()
	g.gs.Stop()
	if g.hs != nil {
		_ = g.hs.Close()
	}
	g.wg.Wait()
}

// restHandler serves go-control-plane's REST gateway (which encodes every
// resource on every poll; xds.Server encodes each once per version) with
// the HTTP handling of xds.Server.
func restHandler(gw *serverv3.HTTPGateway) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		body, code, err := gw.ServeHTTP(r)
		if err != nil {
			http.Error(w, err.Error(), code)
			return
		}
		if code == http.StatusNotModified {
			w.WriteHeader(code)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write(body)
	})
}

// gcpLogger adapts slog to go-control-plane's logger. Its Info lines are
// per-request chatter, logged at debug; its Warn lines include one per REST
// request answered 304, logged at info.
type gcpLogger struct{ l *slog.Logger }

func (g gcpLogger) Debugf(format string, args ...any) { g.l.Debug(fmt.Sprintf(format, args...)) }
func (g gcpLogger) Infof(format string, args ...any)  { g.l.Debug(fmt.Sprintf(format, args...)) }
func (g gcpLogger) Warnf(format string, args ...any)  { g.l.Info(fmt.Sprintf(format, args...)) }
func (g gcpLogger) Errorf(format string, args ...any) { g.l.Error(fmt.Sprintf(format, args...)) }

// ProcessCPU returns the CPU time used by every thread of process pid so
// far, from /proc/PID/task/*/schedstat (nanosecond resolution).
func ProcessCPU(pid int) (time.Duration, error) {
	if pid <= 0 {
		return 0, errors.New("no process")
	}
	tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "schedstat"))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("process %d: no schedstat", pid)
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err == nil {
			total += time.Duration(ns)
		}
	}
	return total, nil
}
