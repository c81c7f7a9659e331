// Command testplugin is a source plugin whose behaviour the host's tests
// choose through its config: it serves, crashes, hangs, or floods.
package main

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/xdsbridge/xdsbridge/sdk"
)

type config struct {
	// Mode: serve (default), exit_after_first, stop_after_first,
	// block_after_first (Run stops sending and ignores cancellation).
	Mode      string        `yaml:"mode"`
	Clusters  int           `yaml:"clusters"`
	Endpoints int           `yaml:"endpoints"`
	Tick      time.Duration `yaml:"tick"` // serve: send a change set this often (0: never)
	// MaxSilence is declared through sdk.Liveness; Beat, when set, repeats
	// the status this often (serve).
	MaxSilence time.Duration `yaml:"max_silence"`
	Beat       time.Duration `yaml:"beat"`
}

type source struct{ cfg config }

// MaxSilence implements sdk.Liveness.
func (s *source) MaxSilence() time.Duration { return s.cfg.MaxSilence }

func main() {
	sdk.Serve(sdk.Plugin{
		Name:    "testplugin",
		Version: "1.2.3",
		Configure: func(_ context.Context, req sdk.ConfigureRequest) (sdk.Source, error) {
			cfg := config{Mode: "serve", Clusters: 1, Endpoints: 1}
			if err := sdk.DecodeConfig(req.Config, &cfg); err != nil {
				return nil, err
			}
			var errs sdk.ConfigErrors
			switch cfg.Mode {
			case "serve", "exit_after_first", "stop_after_first", "block_after_first":
			default:
				errs.Add("mode", "unknown mode %q", cfg.Mode)
			}
			if cfg.Clusters < 0 {
				errs.Add("clusters", "must not be negative")
			}
			if err := errs.Err(); err != nil {
				return nil, err
			}
			return &source{cfg}, nil
		},
	})
}

func (s *source) state(gen int) []sdk.Cluster {
	out := make([]sdk.Cluster, s.cfg.Clusters)
	for c := range out {
		eps := make([]sdk.Endpoint, s.cfg.Endpoints)
		for e := range eps {
			eps[e] = sdk.Endpoint{
				Address:  fmt.Sprintf("10.%d.%d.%d", c%250, e/250%250, e%250+1),
				Port:     uint32(8000 + gen%1000),
				Health:   sdk.Healthy,
				Locality: sdk.Locality{Region: "r1", Zone: fmt.Sprintf("z%d", e%3)},
				Metadata: map[string]any{"gen": float64(gen)},
			}
		}
		out[c] = sdk.Cluster{Name: fmt.Sprintf("c%05d", c), Endpoints: eps}
	}
	return out
}

func (s *source) Run(ctx context.Context, up chan<- sdk.Update) error {
	send := func(u sdk.Update) bool {
		select {
		case up <- u:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !send(sdk.Update{Full: true, Clusters: s.state(0), Status: &sdk.Status{State: sdk.Connected}}) {
		return nil
	}
	switch s.cfg.Mode {
	case "exit_after_first":
		time.Sleep(100 * time.Millisecond) // let the update leave
		os.Exit(3)
	case "stop_after_first":
		time.Sleep(100 * time.Millisecond)
		_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	case "block_after_first":
		select {} // stuck: only the host's kill ends it
	}
	if s.cfg.Beat > 0 {
		t := time.NewTicker(s.cfg.Beat)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			if !send(sdk.Update{Status: &sdk.Status{State: sdk.Connected}}) {
				return nil
			}
		}
	}
	if s.cfg.Tick <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for gen := 1; ; gen++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		st := s.state(gen)
		if !send(sdk.Update{Clusters: st[:1]}) {
			return nil
		}
	}
}
