// Command httpregistry is an example third-party source plugin for
// xdsbridge. It polls an HTTP endpoint that lists services as JSON and
// serves each service as a cluster. It is built with the xdsbridge SDK
// alone; README.md describes its configuration and behaviour.
package main

import (
	"context"
	"errors"
	"slices"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// version is the plugin's version, reported to the host.
const version = "0.1.0"

func main() {
	sdk.Serve(plugin())
}

// plugin describes the plugin to sdk.Serve.
func plugin() sdk.Plugin {
	return sdk.Plugin{Name: "httpregistry", Version: version, Configure: configure}
}

// configure decodes and validates the config block and builds the Source.
// It reports every problem at once: those of decoding (unknown keys, values
// of the wrong type) and those Validate finds in the fields that decoded. It
// reaches no server, so validate-only requests need nothing special.
func configure(_ context.Context, req sdk.ConfigureRequest) (sdk.Source, error) {
	cfg := DefaultConfig()
	var errs sdk.ConfigErrors
	if err := sdk.DecodeConfig(req.Config, &cfg); err != nil {
		if !errors.As(err, &errs) || slices.ContainsFunc(errs, func(e sdk.FieldError) bool { return e.Path == "" }) {
			return nil, err // the block as a whole is broken: its fields mean nothing
		}
	}
	var invalid sdk.ConfigErrors
	if errors.As(cfg.Validate(), &invalid) {
		for _, e := range invalid {
			// A field that did not decode has its default; say nothing more about it.
			if !slices.ContainsFunc(errs, func(d sdk.FieldError) bool { return d.Path == e.Path }) {
				errs = append(errs, e)
			}
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return New(cfg, Options{Logger: req.Logger})
}
