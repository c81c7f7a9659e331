package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/internal/admin"
	"github.com/xdsbridge/xdsbridge/internal/config"
	"github.com/xdsbridge/xdsbridge/internal/host"
	"github.com/xdsbridge/xdsbridge/internal/security/adminauth"
	"github.com/xdsbridge/xdsbridge/internal/security/allowlist"
	"github.com/xdsbridge/xdsbridge/internal/security/certs"
	"github.com/xdsbridge/xdsbridge/xds"
	"github.com/xdsbridge/xdsbridge/xds/conns"
	"github.com/xdsbridge/xdsbridge/xds/store"
	"github.com/xdsbridge/xdsbridge/xds/translate"
)

type logFlags struct {
	level  string
	format string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", l.format)
}

func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: xdsbridge %s [flags]\n\n%s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		fs.Usage()
		return errUsage
	}
	return nil
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("run", `Serves xDS (CDS, EDS, LDS, RDS, ADS; state-of-the-world, delta and REST)
from the source plugins configured in the file. Stops cleanly on SIGINT or SIGTERM.`, stderr)
	path := fs.String("config", "plugins.yaml", "configuration file")
	var lf logFlags
	lf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	logger, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return fmt.Errorf("configuration is invalid:\n%w", err)
	}
	plugins, err := specs(cfg)
	if err != nil {
		return err
	}
	// Problems only a plugin can see in its configuration (its config
	// block, the files it reads) stop the start as they stop `validate`. A
	// plugin that cannot be started at all is a fault, not a configuration
	// problem: the host keeps retrying it with backoff, like any plugin
	// that fails once running.
	var problems []string
	for _, c := range validatePlugins(ctx, cfg, plugins) {
		problems = append(problems, c.problems...)
		if c.failure != "" {
			logger.Warn("plugin could not be checked before start; the host will keep trying", "problem", c.failure)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("configuration is invalid:\n%s", strings.Join(problems, "\n"))
	}
	return serve(ctx, cfg, plugins, logger)
}

// serve wires the data path — host → aggregator → publisher → store →
// xDS server — and runs it until ctx ends or a component fails.
func serve(ctx context.Context, cfg *config.Config, plugins []host.Plugin, logger *slog.Logger) error {
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	clients := conns.New(conns.Options{
		History:  cfg.XDS.Clients.DisconnectHistory,
		RESTIdle: cfg.XDS.Clients.RESTIdleTimeout,
	})
	clock := xds.NewPushClock()
	st := store.New(logger.With("component", "store"))
	ka := cfg.XDS.Keepalive
	rl := cfg.XDS.RateLimit
	sec, err := buildSecurity(cfg, logger)
	if err != nil {
		return err
	}
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
	pub := &xds.Publisher{Store: st, Logger: logger.With("component", "publisher"), Clock: clock}
	var replaced func() map[store.Ref]string
	if g := cfg.XDS.GRPCListeners; g.Enabled {
		name, err := config.ParseTargetName(g.Name)
		if err != nil {
			return fmt.Errorf("xds.grpc_listeners.name: %w", err)
		}
		pub.GRPC = xds.NewGRPCTargets(name, logger.With("component", "grpc-listeners"))
		replaced = pub.GRPC.Replaced
	}
	names := make([]string, len(plugins))
	for i, p := range plugins {
		names[i] = p.Name
	}
	agg := aggregator.New(aggregator.Options{
		Logger:       logger.With("component", "aggregator"),
		Sources:      names,
		Debounce:     cfg.Aggregator.Debounce,
		ReadyTimeout: cfg.Aggregator.ReadyTimeout,
		CheckOverlay: translate.ValidateOverlay,
		Publish:      pub.Publish,
	})
	h := host.New(host.Options{Logger: logger.With("component", "host"), Sink: clock.Sink(agg)}, plugins)
	metrics.MustRegister(admin.NewSourceCollector(h, agg))

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
	start("xds", srv.Run)
	if cfg.Admin.Address != "" {
		adm := admin.New(admin.Options{
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
			Replaced:   replaced,
		})
		start("admin", adm.Run)
	}
	start("aggregator", agg.Run)
	start("host", h.Run)
	wg.Go(func() {
		select {
		case <-agg.Ready():
			srv.Open()
			logger.Info("ready: serving clients", "sources", len(plugins))
		case <-ctx.Done():
		}
	})
	<-ctx.Done()
	logger.Info("shutting down")
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

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

func decodeHex(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("want 64 hex characters")
	}
	return b, nil
}
