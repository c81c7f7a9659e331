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
	var problems []string
	for _, c := range validatePlugins(ctx, cfg, plugins) {
		problems = append(problems, c.problems...)
		if c.failure != "" {
			problems = append(problems, c.failure)
		}
	}
	if len(problems) > 0 {
		fmt.Fprintln(stdout, strings.Join(problems, "\n"))
		return fmt.Errorf("%s: %d problem(s)", *path, len(problems))
	}
	fmt.Fprintf(stdout, "%s: ok (%d plugins)\n", *path, len(plugins))
	return nil
}

// pluginCheck is what validating one plugin found: problems with its
// configuration, or a failure to start it or call it at all.
type pluginCheck struct {
	problems []string // FILE:LINE: message
	failure  string   // FILE:LINE: message, when the plugin could not be asked
}

// validatePlugins checks every plugin's configuration at once and returns
// what it found in plugin order.
func validatePlugins(ctx context.Context, cfg *config.Config, plugins []host.Plugin) []pluginCheck {
	found := make([]pluginCheck, len(plugins))
	var wg sync.WaitGroup
	for i, p := range plugins {
		wg.Go(func() { found[i] = validatePlugin(ctx, cfg, &cfg.Plugins[i], p) })
	}
	wg.Wait()
	return found
}

// validatePlugin starts one plugin in validate-only mode and reports its
// problems as FILE:LINE: message lines.
func validatePlugin(ctx context.Context, cfg *config.Config, p *config.Plugin, hp host.Plugin) pluginCheck {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	at := func(line int, format string, args ...any) string {
		return fmt.Sprintf("%s:%d: plugin %q: %s", cfg.File, line, p.Name, fmt.Sprintf(format, args...))
	}
	conn, err := host.Start(ctx, hp.Spec, slog.New(slog.DiscardHandler))
	if err != nil {
		return pluginCheck{failure: at(p.Line, "%v", err)}
	}
	defer conn.Kill()
	errs, err := conn.Configure(ctx, true)
	if err != nil {
		return pluginCheck{failure: at(p.Line, "%v", err)}
	}
	var out pluginCheck
	for _, e := range errs {
		switch {
		case e.File != "":
			out.problems = append(out.problems, e.Error())
		case e.Path != "":
			out.problems = append(out.problems, at(p.Locate(e.Path), "config.%s: %s", e.Path, e.Message))
		default:
			out.problems = append(out.problems, at(p.Locate(""), "config: %s", e.Message))
		}
	}
	return out
}
