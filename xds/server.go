// Package xds serves the store over xDS v3: CDS, EDS, LDS, RDS and ADS, in
// state-of-the-world and delta variants over gRPC, and REST-JSON over HTTP.
package xds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/config"
	"github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/rest/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/xdsbridge/xdsbridge/internal/security/allowlist"
	"github.com/xdsbridge/xdsbridge/internal/security/certs"
	"github.com/xdsbridge/xdsbridge/internal/security/limits"
	"github.com/xdsbridge/xdsbridge/xds/conns"
	"github.com/xdsbridge/xdsbridge/xds/store"
)

// PushTimes tells when the update behind a published type version was
// received and when the version was published, for the push latency
// histogram.
type PushTimes interface {
	Lookup(typeURL, version string) (received, published time.Time, ok bool)
}

// Options configure a Server.
type Options struct {
	Logger *slog.Logger
	// GRPCAddress serves every xDS service over gRPC.
	GRPCAddress string
	// RESTAddress serves REST-JSON xDS; empty disables it.
	RESTAddress string
	// RESTCluster names the cluster in REST clients' bootstraps that points
	// at RESTAddress: clusters served over REST fetch their endpoints from
	// it. Empty serves REST clients the clusters gRPC clients get.
	RESTCluster string
	Store       *store.Store
	// Keepalive detects vanished clients and accepts clients' pings on
	// gRPC connections.
	Keepalive Keepalive
	// RateLimit bounds discovery requests, gRPC and REST.
	RateLimit RateLimit
	// Clients is the connection registry the server keeps current; nil
	// keeps a private one.
	Clients *conns.Registry
	// Clock, shared with the publisher (publish.PushClock), measures push
	// latency; nil measures none.
	Clock PushTimes
	// Metrics is where the server registers its metrics; nil registers
	// them with a private registry.
	Metrics prometheus.Registerer
	// TLS, when set, serves gRPC and REST over TLS from its files, which
	// Run follows; nil serves plaintext.
	TLS *certs.Reloader
	// Allow decides which client may claim which node, on gRPC and REST;
	// nil allows every client any node.
	Allow *allowlist.List
	// Limits bound what one client can make the server hold or do; its
	// zero fields take limits.Default's values.
	Limits limits.Limits
}

// readBufferSize is each gRPC connection's read buffer.
const readBufferSize = 16 << 10

// shutdownGrace bounds how long in-flight responses get at shutdown.
const shutdownGrace = 5 * time.Second

// Server is the xDS front end.
type Server struct {
	opts      Options
	gate      *gate
	callbacks *callbacks
	clients   *conns.Registry
	metrics   *metrics
	limiter   *limiter

	// lis is the gRPC listener, set before the first connection.
	lis          *listener
	shuttingDown atomic.Bool

	mu       sync.Mutex
	grpcAddr net.Addr
	restAddr net.Addr
	started  chan struct{}
}

// New returns a Server. Nothing is served until Open is called, though
// clients may connect and subscribe. It registers the server's metrics
// with opts.Metrics, and panics if they are registered there already.
func New(opts Options) *Server {
	if opts.Clients == nil {
		opts.Clients = conns.New(conns.Options{})
	}
	if opts.Metrics == nil {
		opts.Metrics = prometheus.NewRegistry()
	}
	m := newMetrics(opts.Metrics, opts.Clients)
	opts.Limits = opts.Limits.OrDefault()
	return &Server{
		opts:      opts,
		gate:      newGate(opts.Store),
		callbacks: newCallbacks(opts.Logger, opts.Store, opts.Clients, m),
		clients:   opts.Clients,
		metrics:   m,
		limiter:   newLimiter(opts.RateLimit, m),
		started:   make(chan struct{}),
	}
}

// Open starts answering clients. Call it once the aggregator is ready.
func (s *Server) Open() { s.gate.Open() }

// Addrs returns the bound gRPC and REST addresses once Run has bound them.
func (s *Server) Addrs(ctx context.Context) (grpcAddr, restAddr net.Addr, err error) {
	select {
	case <-s.started:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grpcAddr, s.restAddr, nil
}

func (s *Server) grpcOptions() []grpc.ServerOption {
	ka := s.opts.Keepalive
	opts := append(s.opts.Limits.GRPCServerOptions(),
		grpc.StatsHandler(&statsHandler{s: s}),
		grpc.ChainStreamInterceptor(s.opts.Allow.StreamInterceptor(), s.opts.Limits.StreamInterceptor(), s.limitRequests),
		grpc.ForceServerCodecV2(newCodec()),
		// Thousands of mostly idle connections: a smaller read buffer than
		// gRPC's 32 KiB (a larger read bypasses it).
		grpc.ReadBufferSize(readBufferSize),
	)
	if s.opts.TLS != nil {
		opts = append(opts, grpc.Creds(s.opts.TLS.ServerCredentials()))
	}
	if ka.Time > 0 {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{Time: ka.Time, Timeout: ka.Timeout}))
	}
	if ka.MinPingInterval > 0 {
		// Envoy's documented connection_keepalive (interval 30s, timeout
		// 5s) and gRPC clients (10s at the least) ping less often than
		// this; accept them rather than sending GOAWAY too_many_pings.
		opts = append(opts, grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime: ka.MinPingInterval, PermitWithoutStream: ka.PermitWithoutStream}))
	}
	return opts
}

// Run serves until ctx ends, then stops gracefully: it stops accepting
// connections and sends every client GOAWAY, ends every xDS stream once
// its response in flight is written, and gives that up to five seconds
// before closing what is left.
func (s *Server) Run(ctx context.Context) error {
	// Streams end when streamsCtx does: at shutdown, after the listener
	// is closed, so that clients reconnect to another replica, not here.
	streamsCtx, endStreams := context.WithCancel(context.WithoutCancel(ctx))
	defer endStreams()
	xdsOpts := []config.XDSOption{sotw.WithOrderedADS(), sotw.WithLogger(goControlPlaneLogger{s.opts.Logger})}
	var fetcher cache.ConfigFetcher = s.gate
	if s.opts.RESTCluster != "" {
		fetcher = newRESTClusters(s.gate, s.opts.RESTCluster)
	}
	// go-control-plane serves delta and REST; sotwServer serves every SotW
	// service registered below.
	gcp := serverv3.NewServerAdvanced(
		rest.NewServer(fetcher, s.callbacks),
		sotw.NewServer(streamsCtx, s.gate, s.callbacks, xdsOpts...),
		delta.NewServer(streamsCtx, s.gate, s.callbacks, xdsOpts...),
	)
	xdsServer := handlers{Server: gcp, sotw: &sotwServer{
		ctx: streamsCtx, store: s.opts.Store, gate: s.gate, cb: s.callbacks, logger: s.opts.Logger}}

	gs := grpc.NewServer(s.grpcOptions()...)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, xdsServer)
	clusterservice.RegisterClusterDiscoveryServiceServer(gs, xdsServer)
	endpointservice.RegisterEndpointDiscoveryServiceServer(gs, xdsServer)
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, xdsServer)
	routeservice.RegisterRouteDiscoveryServiceServer(gs, xdsServer)

	gl, err := listen(ctx, s.opts.GRPCAddress, s.opts.Keepalive, s.opts.Logger)
	if err != nil {
		return fmt.Errorf("xds: listen grpc: %w", err)
	}
	s.lis = gl
	var (
		hs *http.Server
		hl net.Listener
	)
	if s.opts.RESTAddress != "" {
		hl, err = listenTuned(ctx, s.opts.RESTAddress, s.opts.Keepalive, s.opts.Logger)
		if err != nil {
			gl.Close()
			return fmt.Errorf("xds: listen rest: %w", err)
		}
		hs = s.opts.Limits.RESTServer(s.opts.Allow.HTTPMiddleware(s.restHandler(newRESTGateway(xdsServer)), int64(s.opts.Limits.RequestBytes)))
		hs.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, restConnKey{}, s.limiter.forConn())
		}
		if s.opts.TLS != nil {
			hs.TLSConfig = s.opts.TLS.TLSConfig()
		}
	}
	s.mu.Lock()
	s.grpcAddr = gl.Addr()
	if hl != nil {
		s.restAddr = hl.Addr()
	}
	s.mu.Unlock()
	close(s.started)
	s.opts.Logger.Info("serving xds", "grpc", gl.Addr().String(), "rest", listenerAddr(hl),
		"keepalive_time", s.opts.Keepalive.Time, "keepalive_timeout", s.opts.Keepalive.Timeout,
		"vanished_client_evicted_within", s.opts.Keepalive.Bound(), "tls", s.opts.TLS != nil)

	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Go(func() { errc <- gs.Serve(gl) })
	if hs != nil {
		wg.Go(func() {
			serve := func() error { return hs.Serve(hl) }
			if hs.TLSConfig != nil {
				serve = func() error { return hs.ServeTLS(hl, "", "") }
			}
			if err := serve(); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		})
	}
	sweepCtx, stopSweep := context.WithCancel(ctx)
	defer stopSweep()
	wg.Go(func() { _ = s.clients.Run(sweepCtx) })
	if s.opts.TLS != nil {
		// Follow the certificate files until shutdown.
		wg.Go(func() { _ = s.opts.TLS.Run(sweepCtx) })
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	s.shutdown(gs, gl, hs, endStreams)
	stopSweep()
	wg.Wait()
	if runErr != nil {
		return fmt.Errorf("xds: serve: %w", runErr)
	}
	return nil
}

// shutdown stops accepting and sends GOAWAY (GracefulStop), then ends the
// streams, and waits up to shutdownGrace for them and for REST requests.
func (s *Server) shutdown(gs *grpc.Server, gl *listener, hs *http.Server, endStreams func()) {
	s.shuttingDown.Store(true)
	deadline := time.Now().Add(shutdownGrace)
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-gl.Closed():
	case <-stopped:
	}
	endStreams()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		s.opts.Logger.Warn("streams did not end within the shutdown grace period; closing them", "grace", shutdownGrace)
		gs.Stop()
		<-stopped
	}
	if hs != nil {
		sctx, cancel := context.WithDeadline(context.Background(), deadline)
		if err := hs.Shutdown(sctx); err != nil {
			_ = hs.Close()
		}
		cancel()
	}
}

func listenerAddr(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// restConnKey holds a REST connection's rate limit bucket.
type restConnKey struct{}

func (s *Server) restHandler(gw *restGateway) http.Handler {
	logger := s.opts.Logger
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "xds: use POST /v3/discovery:clusters|endpoints|listeners|routes", http.StatusMethodNotAllowed)
			return
		}
		lim, _ := r.Context().Value(restConnKey{}).(*rate.Limiter)
		if err := s.limiter.wait(r.Context(), lim, nil); err != nil {
			return // the client went away
		}
		// Read the body here: the gateway reports any read error as 400.
		maxBody := int64(s.opts.Limits.RequestBytes)
		req, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				http.Error(w, fmt.Sprintf("xds: request body larger than %d bytes", maxBody), http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "xds: cannot read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(req))
		call := &restCall{peer: r.RemoteAddr}
		r = r.WithContext(withRESTCall(r.Context(), call))
		body, code, err := gw.ServeHTTP(r)
		s.callbacks.fetchDone(call, code, len(body))
		if err != nil {
			msg := err.Error()
			logger.Debug("rest request failed", "path", r.URL.Path, "code", code, "err", err)
			http.Error(w, "xds: "+msg, code)
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

// goControlPlaneLogger adapts slog to go-control-plane's logger.
type goControlPlaneLogger struct{ l *slog.Logger }

func (g goControlPlaneLogger) Debugf(format string, args ...any) {
	g.l.Debug(fmt.Sprintf(format, args...))
}
func (g goControlPlaneLogger) Infof(format string, args ...any) {
	g.l.Debug(fmt.Sprintf(format, args...))
}
func (g goControlPlaneLogger) Warnf(format string, args ...any) {
	g.l.Warn(fmt.Sprintf(format, args...))
}
func (g goControlPlaneLogger) Errorf(format string, args ...any) {
	g.l.Error(fmt.Sprintf(format, args...))
}
