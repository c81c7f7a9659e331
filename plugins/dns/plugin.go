// Package dns is the DNS source: it watches SRV or address records and serves
// each name as a cluster whose endpoints follow the records, honouring SRV
// priority, weight and the answers' TTLs. README.md documents its
// configuration.
package dns

import (
	"context"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// Plugin describes the DNS source to sdk.Serve.
func Plugin(version string) sdk.Plugin {
	return sdk.Plugin{Name: "dns", Version: version, Configure: configure}
}

// configure decodes and validates req.Config and builds the Source. It
// reaches no server, so it serves validate-only requests as they are.
func configure(_ context.Context, req sdk.ConfigureRequest) (sdk.Source, error) {
	cfg := DefaultConfig()
	if err := sdk.DecodeConfig(req.Config, &cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s, err := New(cfg, Options{Logger: req.Logger})
	if err != nil {
		return nil, err
	}
	return s, nil
}
