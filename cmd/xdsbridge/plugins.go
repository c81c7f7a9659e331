package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/xdsbridge/xdsbridge/internal/builtin"
	"github.com/xdsbridge/xdsbridge/internal/config"
	"github.com/xdsbridge/xdsbridge/internal/host"
	"github.com/xdsbridge/xdsbridge/sdk"
)

// cmdPlugin runs a built-in plugin as a plugin process.
func cmdPlugin(args []string, stderr io.Writer) error {
	if len(args) != 1 {
		fmt.Fprintf(stderr, "usage: xdsbridge plugin TYPE (started by the plugin host, not by hand)\n")
		return errUsage
	}
	p, ok := builtin.Plugin(args[0], version)
	if !ok {
		return fmt.Errorf("unknown built-in plugin %q (want one of %s)", args[0], strings.Join(builtin.Types(), ", "))
	}
	sdk.Serve(p)
	return nil
}

// specs turns the configured plugins into what the host runs: built-in ones
// re-execute this binary.
func specs(cfg *config.Config) ([]host.Plugin, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own binary for built-in plugins: %w", err)
	}
	env := host.PluginEnv()
	out := make([]host.Plugin, 0, len(cfg.Plugins))
	for _, p := range cfg.Plugins {
		hp := host.Plugin{
			Spec: host.Spec{
				Name:    p.Name,
				Env:     env,
				Config:  p.Config,
				BaseDir: cfg.Dir,
			},
			InitialBackoff: p.Restart.InitialBackoff,
			MaxBackoff:     p.Restart.MaxBackoff,
			RestartOnStale: p.RestartOnStale,
		}
		if p.Type != "" {
			hp.Command = []string{self, "plugin", p.Type}
		} else {
			hp.Command = slices.Clone(p.Command)
			if !filepath.IsAbs(hp.Command[0]) && strings.ContainsRune(hp.Command[0], filepath.Separator) {
				hp.Command[0] = filepath.Join(cfg.Dir, hp.Command[0])
			}
		}
		if p.SHA256 != "" {
			sum, err := decodeHex(p.SHA256)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: plugin %q: sha256: %w", cfg.File, p.Line, p.Name, err)
			}
			hp.SHA256 = sum
		}
		out = append(out, hp)
	}
	return out, nil
}
