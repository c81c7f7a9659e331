// Package xds serves the store over xDS v3: CDS, EDS, LDS, RDS and ADS, in
// state-of-the-world and delta variants over gRPC, and REST-JSON over HTTP.
package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/xdsbridge/xdsbridge/xds/store"
)

// Options configure a Server.
type Options struct {
	Logger *slog.Logger
	// GRPCAddress serves every xDS service over gRPC.
	GRPCAddress string
	// RESTAddress serves REST-JSON xDS; empty disables it.
	RESTAddress string
	Store       *store.Store
}

// Server is the xDS front end.
type Server struct {
	opts      Options
	gate      *gate
	callbacks *callbacks

	mu       sync.Mutex
	grpcAddr net.Addr
	restAddr net.Addr
	started  chan struct{}
}

// New returns a Server. Nothing is served until Open is called, though
// clients may connect and subscribe.
func New(opts Options) *Server {
	return &Server{
		opts:      opts,
		gate:      newGate(opts.Store),
		callbacks: newCallbacks(opts.Logger, opts.Store),
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

// Run serves until ctx ends, then stops gracefully: new streams are refused,
// in-flight responses get up to five seconds.
func (s *Server) Run(ctx context.Context) error {
	xdsServer := serverv3.NewServer(ctx, s.gate, s.callbacks,
		sotw.WithOrderedADS(),
		sotw.WithLogger(goControlPlaneLogger{s.opts.Logger}),
	)

	gs := grpc.NewServer(
		grpc.MaxConcurrentStreams(1<<20),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// Envoy's documented connection_keepalive pings can be as frequent
		// as every few seconds; accept them instead of sending GOAWAY.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
	)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, xdsServer)
	clusterservice.RegisterClusterDiscoveryServiceServer(gs, xdsServer)
	endpointservice.RegisterEndpointDiscoveryServiceServer(gs, xdsServer)
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, xdsServer)
	routeservice.RegisterRouteDiscoveryServiceServer(gs, xdsServer)

	var lc net.ListenConfig
	gl, err := lc.Listen(ctx, "tcp", s.opts.GRPCAddress)
	if err != nil {
		return fmt.Errorf("xds: listen grpc: %w", err)
	}
	var (
		hs *http.Server
		hl net.Listener
	)
	if s.opts.RESTAddress != "" {
		hl, err = lc.Listen(ctx, "tcp", s.opts.RESTAddress)
		if err != nil {
			gl.Close()
			return fmt.Errorf("xds: listen rest: %w", err)
		}
		hs = &http.Server{
			Handler:           restHandler(&serverv3.HTTPGateway{Server: xdsServer}, s.opts.Logger),
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
		}
	}
	s.mu.Lock()
	s.grpcAddr = gl.Addr()
	if hl != nil {
		s.restAddr = hl.Addr()
	}
	s.mu.Unlock()
	close(s.started)
	s.opts.Logger.Info("serving xds", "grpc", gl.Addr().String(), "rest", addrString(hl))

	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Go(func() { errc <- gs.Serve(gl) })
	if hs != nil {
		wg.Go(func() {
			if err := hs.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		})
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		gs.Stop()
		<-stopped
	}
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = hs.Shutdown(sctx)
		cancel()
	}
	wg.Wait()
	if runErr != nil {
		return fmt.Errorf("xds: serve: %w", runErr)
	}
	return nil
}

func addrString(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// maxRESTBody bounds a REST discovery request.
const maxRESTBody = 4 << 20

func restHandler(gw *serverv3.HTTPGateway, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "xds: use POST /v3/discovery:clusters|endpoints|listeners|routes", http.StatusMethodNotAllowed)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxRESTBody)
		body, code, err := gw.ServeHTTP(r)
		if err != nil {
			msg := err.Error()
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) || strings.Contains(msg, "request body too large") {
				code = http.StatusRequestEntityTooLarge
			}
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

func (g goControlPlaneLogger) Debugf(format string, args ...any) { g.l.Debug(fmt.Sprintf(format, args...)) }
func (g goControlPlaneLogger) Infof(format string, args ...any)  { g.l.Debug(fmt.Sprintf(format, args...)) }
func (g goControlPlaneLogger) Warnf(format string, args ...any)  { g.l.Warn(fmt.Sprintf(format, args...)) }
func (g goControlPlaneLogger) Errorf(format string, args ...any) { g.l.Error(fmt.Sprintf(format, args...)) }
