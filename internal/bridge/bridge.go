// Package bridge is xdsbridge's composition root: from a parsed
// configuration it builds the data path — plugin host → aggregator →
// publisher → store → xDS server — with the admin server beside it, and
// runs it. `xdsbridge run` and the benchmark both run a Bridge, so what is
// measured is what is shipped.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/internal/admin"
	"github.com/xdsbridge/xdsbridge/internal/config"
	"github.com/xdsbridge/xdsbridge/internal/host"
	"github.com/xdsbridge/xdsbridge/internal/publish"
	"github.com/xdsbridge/xdsbridge/internal/security/adminauth"
	"github.com/xdsbridge/xdsbridge/internal/security/allowlist"
	"github.com/xdsbridge/xdsbridge/internal/security/certs"
	"github.com/xdsbridge/xdsbridge/sdk/overlay"
	"github.com/xdsbridge/xdsbridge/xds"
	"github.com/xdsbridge/xdsbridge/xds/conns"
	"github.com/xdsbridge/xdsbridge/xds/store"
)

// Options configure a Bridge.
type Options struct {
	// Config is the parsed configuration: xds, admin (off when its address
	// is empty) and aggregator settings. Its plugins list is not read:
	// Plugins is what the host runs.
	Config *config.Config
	// Plugins are the source plugins the host runs, in the configuration's
	// order.
	Plugins []host.Plugin
	Logger  *slog.Logger
	// OnBuild, if set, is called with each change the aggregator hands to
	// the publisher, before it is translated; OnPublish after it has been
	// applied to the store. The benchmark times the stages with them.
	OnBuild, OnPublish func(*aggregator.Change)
	// Version is the build's version, shown by the admin status page.
	Version string
}

// Bridge is the wired data path. Build it with New and run it once with
// Run.
type Bridge struct {
	logger  *slog.Logger
	cfg     *config.Config
	metrics *prometheus.Registry
	clients *conns.Registry
	store   *store.Store
	srv     *xds.Server
	agg     *aggregator.Aggregator
	host    *host.Host
	admin   *admin.Server // nil: no admin server
	sources int
	serving chan struct{}
}

// New builds every component from opts, loading the TLS files, allow list
// and admin token the configuration names; nothing runs until Run.
func New(opts Options) (*Bridge, error) {
	cfg, logger := opts.Config, opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sec, err := buildSecurity(cfg, logger)
	if err != nil {
		return nil, err
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	clients := conns.New(conns.Options{
		History:  cfg.XDS.Clients.DisconnectHistory,
		RESTIdle: cfg.XDS.Clients.RESTIdleTimeout,
	})
	clock := publish.NewPushClock()
	st := store.New(logger.With("component", "store"))
	ka := cfg.XDS.Keepalive
	rl := cfg.XDS.RateLimit
	srv := xds.New(xds.Options{
		Logger:      logger.With("component", "xds"),
		GRPCAddress: cfg.XDS.GRPCAddress,
		RESTAddress: cfg.XDS.RESTAddress,
		RESTCluster: cfg.XDS.RESTCluster,
		Store:       st,
		Keepalive: xds.Keepalive{
			Time:                ka.Time,
			Timeout:             ka.Timeout,
			MinPingInterval:     ka.MinPingInterval,
			PermitWithoutStream: ka.PermitWithoutStream,
		},
		RateLimit: xds.RateLimit{
			PerConnection: xds.Bucket{Rate: rl.PerConnection.Rate, Burst: rl.PerConnection.Burst},
			Total:         xds.Bucket{Rate: rl.Total.Rate, Burst: rl.Total.Burst},
		},
		Clients: clients,
		Clock:   clock,
		Metrics: metrics,
		TLS:     sec.tls,
		Allow:   sec.allow,
	})
	pub := &publish.Publisher{Store: st, Logger: logger.With("component", "publisher"), Clock: clock}
	var replaced func() map[store.Ref]string
	if g := cfg.XDS.GRPCListeners; g.Enabled {
		name, err := config.ParseTargetName(g.Name)
		if err != nil {
			return nil, fmt.Errorf("xds.grpc_listeners.name: %w", err)
		}
		pub.GRPC = publish.NewGRPCTargets(name, logger.With("component", "grpc-listeners"))
		replaced = pub.GRPC.Replaced
	}
	publishChange := pub.Publish
	if opts.OnBuild != nil || opts.OnPublish != nil {
		publishChange = func(ctx context.Context, c *aggregator.Change) {
			if opts.OnBuild != nil {
				opts.OnBuild(c)
			}
			pub.Publish(ctx, c)
			if opts.OnPublish != nil {
				opts.OnPublish(c)
			}
		}
	}
	names := make([]string, len(opts.Plugins))
	for i, p := range opts.Plugins {
		names[i] = p.Name
	}
	agg := aggregator.New(aggregator.Options{
		Logger:       logger.With("component", "aggregator"),
		Sources:      names,
		Debounce:     cfg.Aggregator.Debounce,
		ReadyTimeout: cfg.Aggregator.ReadyTimeout,
		CheckOverlay: overlay.Validate,
		Publish:      publishChange,
	})
	h := host.New(host.Options{Logger: logger.With("component", "host"), Sink: clock.Sink(agg)}, opts.Plugins)
	metrics.MustRegister(admin.NewSourceCollector(h, agg))

	b := &Bridge{
		logger:  logger,
		cfg:     cfg,
		metrics: metrics,
		clients: clients,
		store:   st,
		srv:     srv,
		agg:     agg,
		host:    h,
		sources: len(opts.Plugins),
		serving: make(chan struct{}),
	}
	if cfg.Admin.Address != "" {
		b.admin = admin.New(admin.Options{
			Logger:     logger.With("component", "admin"),
			Address:    cfg.Admin.Address,
			Ready:      agg.Ready(),
			Store:      st,
			Host:       h,
			Aggregator: agg,
			Clients:    clients,
			Metrics:    metrics,
			Token:      sec.token,
			PProf:      cfg.Admin.PProf,
			Version:    opts.Version,
			Replaced:   replaced,
		})
	}
	return b, nil
}

// Run runs every component until ctx ends or one of them fails, and opens
// the xDS server to clients once the aggregator is ready. It returns nil
// when ctx ends, or the first component's error, naming the component.
func (b *Bridge) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	start := func(name string, fn func(context.Context) error) {
		wg.Go(func() {
			if err := fn(ctx); err != nil {
				cancel(fmt.Errorf("%s: %w", name, err))
			}
		})
	}
	start("xds", b.srv.Run)
	if b.admin != nil {
		start("admin", b.admin.Run)
	}
	start("aggregator", b.agg.Run)
	start("host", b.host.Run)
	wg.Go(func() {
		select {
		case <-b.agg.Ready():
			b.srv.Open()
			close(b.serving)
			b.logger.Info("ready: serving clients", "sources", b.sources)
		case <-ctx.Done():
		}
	})
	<-ctx.Done()
	b.logger.Info("shutting down")
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// Serving is closed once every source has delivered its first full state
// (or the ready timeout passed), the state is published and the xDS server
// answers clients.
func (b *Bridge) Serving() <-chan struct{} { return b.serving }

// Addrs returns the bound gRPC and REST addresses once Run has bound them.
func (b *Bridge) Addrs(ctx context.Context) (grpcAddr, restAddr net.Addr, err error) {
	return b.srv.Addrs(ctx)
}

// Metrics is the registry every component registers its metrics with.
func (b *Bridge) Metrics() prometheus.Gatherer { return b.metrics }

// Sources returns the state of every plugin the host runs.
func (b *Bridge) Sources() []host.Status { return b.host.Statuses() }

// security is what the xds and admin servers are guarded with.
type security struct {
	tls   *certs.Reloader
	allow *allowlist.List
	token *adminauth.Token
}

// buildSecurity loads the TLS files, the allow list and the admin token
// the configuration names. It warns when xDS is served in plaintext
// beyond loopback.
func buildSecurity(cfg *config.Config, logger *slog.Logger) (security, error) {
	var sec security
	if t := cfg.XDS.TLS; t != nil {
		r, err := certs.New(certs.Options{
			Logger:       logger.With("component", "tls"),
			CertFile:     t.CertFile,
			KeyFile:      t.KeyFile,
			ClientCAFile: t.ClientCAFile,
			MinVersion:   t.MinVersion,
		})
		if err != nil {
			return sec, fmt.Errorf("xds.tls: %w", err)
		}
		sec.tls = r
		if len(t.Allow) > 0 {
			rules := make([]allowlist.Rule, len(t.Allow))
			for i, a := range t.Allow {
				rules[i] = allowlist.Rule{Identity: a.Identity, NodeIDs: a.NodeIDs, NodeClusters: a.NodeClusters}
			}
			l, err := allowlist.New(rules, allowlist.Options{Logger: logger.With("component", "allowlist")})
			if err != nil {
				return sec, fmt.Errorf("xds.tls.allow: %w", err)
			}
			sec.allow = l
		}
	} else if !adminauth.IsLoopback(cfg.XDS.GRPCAddress) {
		logger.Warn("xds is served without TLS on an address that is not loopback: any client that reaches it gets the mesh's configuration; set xds.tls",
			"grpc_address", cfg.XDS.GRPCAddress)
	}
	if cfg.Admin.TokenFile != "" {
		tok, err := adminauth.NewToken(cfg.Admin.TokenFile, logger.With("component", "admin"))
		if err != nil {
			return sec, fmt.Errorf("admin.token_file: %w", err)
		}
		sec.token = tok
	}
	return sec, nil
}
