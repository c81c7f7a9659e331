package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/xdsbridge/xdsbridge/internal/config"
	"github.com/xdsbridge/xdsbridge/internal/host"
)

func cmdValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", `Checks the configuration file and hands each plugin its config block to check
(plugins start in validate-only mode and reach nothing outside their process).
Prints every problem as FILE:LINE: message and exits 1 if there is any.`, stderr)
	path := fs.String("config", "plugins.yaml", "configuration file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		var es config.Errors
		if errors.As(err, &es) {
			fmt.Fprintln(stdout, es.Error())
			return fmt.Errorf("%s: %d problem(s)", *path, len(es))
		}
		return err
	}
	plugins, err := specs(cfg)
	if err != nil {
		return err
	}
	if problems := validatePlugins(ctx, cfg, plugins); len(problems) > 0 {
		fmt.Fprintln(stdout, strings.Join(problems, "\n"))
		return fmt.Errorf("%s: %d problem(s)", *path, len(problems))
	}
	fmt.Fprintf(stdout, "%s: ok (%d plugins)\n", *path, len(plugins))
	return nil
}

// validatePlugins checks every plugin's configuration at once and returns
// the problems in plugin order.
func validatePlugins(ctx context.Context, cfg *config.Config, plugins []host.Plugin) []string {
	found := make([][]string, len(plugins))
	var wg sync.WaitGroup
	for i, p := range plugins {
		wg.Go(func() { found[i] = validatePlugin(ctx, cfg, &cfg.Plugins[i], p) })
	}
	wg.Wait()
	var out []string
	for _, f := range found {
		out = append(out, f...)
	}
	return out
}

// validatePlugin starts one plugin in validate-only mode and returns its
// problems as FILE:LINE: message lines.
func validatePlugin(ctx context.Context, cfg *config.Config, p *config.Plugin, hp host.Plugin) []string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	at := func(line int, format string, args ...any) string {
		return fmt.Sprintf("%s:%d: plugin %q: %s", cfg.File, line, p.Name, fmt.Sprintf(format, args...))
	}
	conn, err := host.Start(ctx, hp.Spec, slog.New(slog.DiscardHandler))
	if err != nil {
		return []string{at(p.Line, "%v", err)}
	}
	defer conn.Kill()
	errs, err := conn.Configure(ctx, true)
	if err != nil {
		return []string{at(p.Line, "%v", err)}
	}
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		switch {
		case e.File != "":
			out = append(out, e.Error())
		case e.Path != "":
			out = append(out, at(p.Locate(e.Path), "config.%s: %s", e.Path, e.Message))
		default:
			out = append(out, at(p.Locate(""), "config: %s", e.Message))
		}
	}
	return out
}
