// Command testplugin is a scripted source plugin for sdktest's own tests:
// its configuration lists the updates it sends, and a few switches make it
// misbehave in the ways sdktest must catch.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// config is the plugin's `config` block.
type config struct {
	// Updates are sent in order once Run starts.
	Updates []update `yaml:"updates"`
	// Fail makes Run return an error with this text after the updates.
	Fail string `yaml:"fail"`
	// IgnoreCancel makes Run ignore its context (a bug).
	IgnoreCancel bool `yaml:"ignore_cancel"`
	// Port, when set, must be in 1–65535 (something to get wrong).
	Port int `yaml:"port"`
	// LaxApply skips validation unless ValidateOnly is set (a bug).
	LaxApply bool `yaml:"lax_apply"`
	// Unplaced makes Configure fail with an error that names no field.
	Unplaced bool `yaml:"unplaced"`
	// MaxSilence is the liveness promise (sdk.Liveness); Beat, when set,
	// repeats a connected status this often after the updates.
	MaxSilence time.Duration `yaml:"max_silence"`
	Beat       time.Duration `yaml:"beat"`
}

type update struct {
	Full      bool          `yaml:"full"`
	Clusters  []cluster     `yaml:"clusters"`
	Removed   []string      `yaml:"removed"`
	Listeners []string      `yaml:"listeners"`
	Raw       []rawResource `yaml:"raw_resources"`
	Status    string        `yaml:"status"`
	Reason    string        `yaml:"reason"`
	// Delay is waited before the update is sent.
	Delay time.Duration `yaml:"delay"`
}

type cluster struct {
	Name      string     `yaml:"name"`
	Endpoints []endpoint `yaml:"endpoints"`
}

type endpoint struct {
	Address string `yaml:"address"`
	Port    uint32 `yaml:"port"`
	Health  int    `yaml:"health"`
}

type rawResource struct {
	TypeURL string `yaml:"type_url"`
	Value   string `yaml:"value"`
}

func main() {
	name := flag.String("name", "testplugin", "name reported by Info")
	version := flag.String("version", "1.0.0", "version reported by Info")
	flag.Parse()
	sdk.Serve(sdk.Plugin{Name: *name, Version: *version, Configure: configure})
	os.Exit(0)
}

func configure(_ context.Context, req sdk.ConfigureRequest) (sdk.Source, error) {
	var cfg config
	if err := sdk.DecodeConfig(req.Config, &cfg); err != nil {
		return nil, err
	}
	if cfg.LaxApply && !req.ValidateOnly {
		return &source{cfg: cfg}, nil
	}
	var errs sdk.ConfigErrors
	if cfg.Port != 0 && (cfg.Port < 1 || cfg.Port > 65535) {
		errs.Add("port", "%d is out of range 1-65535", cfg.Port)
	}
	if cfg.Unplaced {
		return nil, errors.New("something is wrong somewhere")
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return &source{cfg: cfg}, nil
}

type source struct{ cfg config }

// MaxSilence implements sdk.Liveness.
func (s *source) MaxSilence() time.Duration { return s.cfg.MaxSilence }

func (s *source) Run(ctx context.Context, up chan<- sdk.Update) error {
	for _, u := range s.cfg.Updates {
		out, err := u.build()
		if err != nil {
			return err
		}
		if u.Delay > 0 {
			t := time.NewTimer(u.Delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case up <- out:
		}
	}
	if s.cfg.Fail != "" {
		return errors.New(s.cfg.Fail)
	}
	if s.cfg.IgnoreCancel {
		select {} // never returns: the bug sdktest must catch
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
			select {
			case <-ctx.Done():
				return nil
			case up <- sdk.Update{Status: &sdk.Status{State: sdk.Connected}}:
			}
		}
	}
	<-ctx.Done()
	return nil
}

func (u update) build() (sdk.Update, error) {
	out := sdk.Update{Full: u.Full, RemovedClusters: u.Removed}
	for _, c := range u.Clusters {
		sc := sdk.Cluster{Name: c.Name}
		for _, e := range c.Endpoints {
			sc.Endpoints = append(sc.Endpoints, sdk.Endpoint{Address: e.Address, Port: e.Port, Health: sdk.Health(e.Health)})
		}
		out.Clusters = append(out.Clusters, sc)
	}
	for _, name := range u.Listeners {
		r, err := sdk.NewResource(&listenerv3.Listener{Name: name})
		if err != nil {
			return sdk.Update{}, fmt.Errorf("listener %q: %w", name, err)
		}
		out.Resources = append(out.Resources, r)
	}
	for _, r := range u.Raw {
		out.Resources = append(out.Resources, sdk.Resource{TypeURL: r.TypeURL, Value: []byte(r.Value)})
	}
	switch u.Status {
	case "":
	case "connected":
		out.Status = &sdk.Status{State: sdk.Connected, Reason: u.Reason}
	case "disconnected":
		out.Status = &sdk.Status{State: sdk.Disconnected, Reason: u.Reason}
	default:
		out.Status = &sdk.Status{State: sdk.StateUnknown, Reason: u.Reason}
	}
	return out, nil
}
