package systems

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/bench/fleet"
	"github.com/xdsbridge/xdsbridge/bench/synth"
	"github.com/xdsbridge/xdsbridge/bench/workload"
	"github.com/xdsbridge/xdsbridge/internal/config"
	"github.com/xdsbridge/xdsbridge/internal/host"
	"github.com/xdsbridge/xdsbridge/sdk/overlay"
	"github.com/xdsbridge/xdsbridge/xds"
	"github.com/xdsbridge/xdsbridge/xds/conns"
	"github.com/xdsbridge/xdsbridge/xds/store"
)

// Bridge is xdsbridge as it runs in production — plugin host, aggregator,
// publisher, store and xDS server wired as `xdsbridge run` wires them, with
// the default aggregator settings — fed by the synthetic source plugin.
// Changes reach it the way a real source's do: the driver sends each Op to
// the plugin process, which sends an update through the plugin protocol.
type Bridge struct {
	// PluginCommand runs the synthetic plugin (a binary calling
	// sdk.Serve(synth.Plugin(…))).
	PluginCommand []string
	Logger        *slog.Logger
	// OnBuild, if set, is called with each change the aggregator hands to
	// the publisher, before it is translated; OnPublish after it has been
	// applied to the store.
	OnBuild, OnPublish func(*aggregator.Change)
	// NoRateLimit turns off the server's default request rate limits.
	NoRateLimit bool

	metrics *prometheus.Registry

	dir    string
	ctl    *synth.Controller
	host   *host.Host
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
}

func (b *Bridge) Name() string { return "xdsbridge" }

func (b *Bridge) logger() *slog.Logger {
	if b.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return b.Logger
}

func (b *Bridge) Start(ctx context.Context, _ *workload.Model, init workload.Op) (fleet.Target, error) {
	if len(b.PluginCommand) == 0 {
		return fleet.Target{}, errors.New("xdsbridge: no plugin command")
	}
	logger := b.logger()
	dir, err := os.MkdirTemp("", "xdsbench-")
	if err != nil {
		return fleet.Target{}, fmt.Errorf("xdsbridge: %w", err)
	}
	b.dir = dir
	ctl, err := synth.Listen(ctx, dir)
	if err != nil {
		os.RemoveAll(dir)
		return fleet.Target{}, fmt.Errorf("xdsbridge: %w", err)
	}
	b.ctl = ctl

	// Wired as cmd/xdsbridge's serve wires it, with the default settings
	// (keepalive, rate limits, connection registry, push clock, metrics);
	// only the admin server, which is off the data path, is left out.
	defaults := config.Default()
	restart := config.DefaultRestart()
	b.metrics = prometheus.NewRegistry()
	clients := conns.New(conns.Options{
		History:  defaults.XDS.Clients.DisconnectHistory,
		RESTIdle: defaults.XDS.Clients.RESTIdleTimeout,
	})
	clock := xds.NewPushClock()
	st := store.New(logger.With("component", "store"))
	ka, rl := defaults.XDS.Keepalive, defaults.XDS.RateLimit
	if b.NoRateLimit {
		rl = config.RateLimit{}
	}
	srv := xds.New(xds.Options{
		Logger:      logger.With("component", "xds"),
		GRPCAddress: "127.0.0.1:0",
		RESTAddress: "127.0.0.1:0",
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
		Metrics: b.metrics,
	})
	pub := &xds.Publisher{Store: st, Logger: logger.With("component", "publisher"), Clock: clock}
	publish := func(ctx context.Context, c *aggregator.Change) {
		if b.OnBuild != nil {
			b.OnBuild(c)
		}
		pub.Publish(ctx, c)
		if b.OnPublish != nil {
			b.OnPublish(c)
		}
	}
	agg := aggregator.New(aggregator.Options{
		Logger:       logger.With("component", "aggregator"),
		Sources:      []string{workload.SourceName},
		Debounce:     defaults.Aggregator.Debounce,
		ReadyTimeout: defaults.Aggregator.ReadyTimeout,
		CheckOverlay: overlay.Validate,
		Publish:      publish,
	})
	b.host = host.New(host.Options{Logger: logger.With("component", "host"), Sink: clock.Sink(agg)}, []host.Plugin{{
		Spec: host.Spec{
			Name:    workload.SourceName,
			Command: b.PluginCommand,
			Env:     host.PluginEnv(),
			Config:  ctl.ConfigYAML(),
		},
		InitialBackoff: restart.InitialBackoff,
		MaxBackoff:     restart.MaxBackoff,
	}})

	runCtx, cancel := context.WithCancelCause(context.Background())
	b.cancel = cancel
	start := func(name string, fn func(context.Context) error) {
		b.wg.Go(func() {
			if err := fn(runCtx); err != nil {
				cancel(fmt.Errorf("%s: %w", name, err))
			}
		})
	}
	start("xds", srv.Run)
	start("aggregator", agg.Run)
	start("host", b.host.Run)

	fail := func(err error) (fleet.Target, error) {
		_ = b.Stop()
		return fleet.Target{}, fmt.Errorf("xdsbridge: %w", err)
	}
	actx, acancel := context.WithTimeout(ctx, 30*time.Second)
	defer acancel()
	if err := ctl.Accept(actx); err != nil {
		return fail(err)
	}
	if err := ctl.Send(init); err != nil {
		return fail(err)
	}
	select {
	case <-agg.Ready():
	case <-runCtx.Done():
		return fail(context.Cause(runCtx))
	case <-actx.Done():
		return fail(fmt.Errorf("not ready: %w", actx.Err()))
	}
	srv.Open()
	grpcAddr, restAddr, err := srv.Addrs(actx)
	if err != nil {
		return fail(err)
	}
	return fleet.Target{GRPC: grpcAddr.String(), REST: restAddr.String()}, nil
}

func (b *Bridge) Apply(_ context.Context, op workload.Op, _ *workload.Model, _, _ []workload.Ref) error {
	return b.ctl.Send(op)
}

func (b *Bridge) Stop() error {
	if b.cancel != nil {
		b.cancel(nil)
	}
	b.wg.Wait()
	if b.ctl != nil {
		b.ctl.Close()
	}
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
	return nil
}

// Counter returns the sum of the server's counters whose name contains
// substr (xdsbridge_xds_rate_limit_enforced_total, say), or 0.
func (b *Bridge) Counter(substr string) float64 {
	if b.metrics == nil {
		return 0
	}
	mfs, err := b.metrics.Gather()
	if err != nil {
		return 0
	}
	var total float64
	for _, mf := range mfs {
		if !strings.Contains(mf.GetName(), substr) {
			continue
		}
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// ChildCPU is the plugin process's CPU time.
func (b *Bridge) ChildCPU() time.Duration {
	if b.host == nil {
		return 0
	}
	for _, s := range b.host.Statuses() {
		if d, err := ProcessCPU(s.Pid); err == nil {
			return d
		}
	}
	return 0
}
