// Package static is the static-file source: it serves the clusters,
// endpoints and Envoy-native resources written in a YAML file, and follows
// the file as it changes. README.md documents the file and the
// configuration.
package static

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// Config is the `config` block of a `type: static` plugin instance.
type Config struct {
	// Path is the cluster file to serve. A relative path resolves against
	// the directory of plugins.yaml. Required; no default.
	Path string `yaml:"path"`
}

// DefaultConfig returns the configuration with every default applied.
func DefaultConfig() Config {
	return Config{}
}

// Validate reports the problems of c as sdk.ConfigErrors.
func (c Config) Validate() error {
	var errs sdk.ConfigErrors
	if c.Path == "" {
		errs.Add("path", "must be set (the cluster file to serve)")
	}
	return errs.Err()
}

// Plugin describes the static source to sdk.Serve.
func Plugin(version string) sdk.Plugin {
	return sdk.Plugin{Name: "static", Version: version, Configure: configure}
}

// configure decodes and validates req.Config, then reads and checks the
// cluster file, so that every problem in it is reported at configuration
// time (by `xdsbridge validate` too) with its file and line. It starts
// nothing: watching starts with Run.
func configure(_ context.Context, req sdk.ConfigureRequest) (sdk.Source, error) {
	cfg := DefaultConfig()
	if err := sdk.DecodeConfig(req.Config, &cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(cfg.Path) {
		cfg.Path = filepath.Join(req.BaseDir, cfg.Path)
	}
	data, err := os.ReadFile(cfg.Path)
	if err != nil {
		return nil, sdk.ConfigErrors{{Path: "path", Message: fmt.Sprintf("cannot read %s: %s", cfg.Path, readError(err))}}
	}
	if _, errs := parseFile(cfg.Path, data); len(errs) > 0 {
		return nil, errs
	}
	return New(cfg, req.Logger)
}

// readError is the reason a file could not be read, without the path that
// the caller already names.
func readError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
