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

	"github.com/xdsbridge/xdsbridge/internal/bridge"
	"github.com/xdsbridge/xdsbridge/internal/config"
	"github.com/xdsbridge/xdsbridge/internal/host"
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

// serve builds the data path — host → aggregator → publisher → store →
// xDS server — and runs it until ctx ends or a component fails.
func serve(ctx context.Context, cfg *config.Config, plugins []host.Plugin, logger *slog.Logger) error {
	b, err := bridge.New(bridge.Options{Config: cfg, Plugins: plugins, Logger: logger, Version: version})
	if err != nil {
		return err
	}
	return b.Run(ctx)
}

func decodeHex(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("want 64 hex characters")
	}
	return b, nil
}
