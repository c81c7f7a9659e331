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

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/bench/fleet"
	"github.com/xdsbridge/xdsbridge/bench/synth"
	"github.com/xdsbridge/xdsbridge/bench/workload"
	"github.com/xdsbridge/xdsbridge/internal/bridge"
	"github.com/xdsbridge/xdsbridge/internal/config"
	"github.com/xdsbridge/xdsbridge/internal/host"
)

// Bridge is xdsbridge as it runs in production — plugin host, aggregator,
// publisher, store and xDS server wired by internal/bridge, as `xdsbridge
// run` wires them, with
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

	dir    string
	ctl    *synth.Controller
	bridge *bridge.Bridge
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

	// Wired by the same composition root as `xdsbridge run`, with the
	// default settings (keepalive, rate limits, connection registry, push
	// clock, metrics) on loopback ports; only the admin server, which is
	// off the data path, is left out.
	cfg := config.Default()
	cfg.XDS.GRPCAddress, cfg.XDS.RESTAddress = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Admin.Address = ""
	if b.NoRateLimit {
		cfg.XDS.RateLimit = config.RateLimit{}
	}
	restart := config.DefaultRestart()
	br, err := bridge.New(bridge.Options{
		Config: cfg,
		Plugins: []host.Plugin{{
			Spec: host.Spec{
				Name:    workload.SourceName,
				Command: b.PluginCommand,
				Env:     host.PluginEnv(),
				Config:  ctl.ConfigYAML(),
			},
			InitialBackoff: restart.InitialBackoff,
			MaxBackoff:     restart.MaxBackoff,
		}},
		Logger:    logger,
		OnBuild:   b.OnBuild,
		OnPublish: b.OnPublish,
	})
	if err != nil {
		_ = b.Stop()
		return fleet.Target{}, fmt.Errorf("xdsbridge: %w", err)
	}
	b.bridge = br

	runCtx, cancel := context.WithCancelCause(context.Background())
	b.cancel = cancel
	b.wg.Go(func() {
		if err := br.Run(runCtx); err != nil {
			cancel(err)
		}
	})

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
	case <-br.Serving():
	case <-runCtx.Done():
		return fail(context.Cause(runCtx))
	case <-actx.Done():
		return fail(fmt.Errorf("not ready: %w", actx.Err()))
	}
	grpcAddr, restAddr, err := br.Addrs(actx)
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
	if b.bridge == nil {
		return 0
	}
	mfs, err := b.bridge.Metrics().Gather()
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
	if b.bridge == nil {
		return 0
	}
	for _, s := range b.bridge.Sources() {
		if d, err := ProcessCPU(s.Pid); err == nil {
			return d
		}
	}
	return 0
}
