// Package consul is the Consul catalog source: it watches Consul's catalog
// with blocking queries and serves each selected service as a cluster whose
// endpoints follow the service's instances and their health. README.md
// documents its configuration and behaviour.
package consul

import (
	"context"
	"errors"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// Plugin describes the Consul source to sdk.Serve.
func Plugin(version string) sdk.Plugin {
	return sdk.Plugin{Name: "consul", Version: version, Configure: configure}
}

// configure decodes and validates req.Config and builds the Source. It
// reads token_file and the TLS files but reaches no server, so it serves
// validate-only requests as they are.
func configure(_ context.Context, req sdk.ConfigureRequest) (sdk.Source, error) {
	cfg := DefaultConfig()
	if err := sdk.DecodeConfig(req.Config, &cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s, err := New(cfg, Options{Logger: req.Logger, BaseDir: req.BaseDir})
	if err != nil {
		// Unwrap field errors so the host can place them.
		var ce sdk.ConfigErrors
		if errors.As(err, &ce) {
			return nil, ce
		}
		return nil, err
	}
	return s, nil
}
