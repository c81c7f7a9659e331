// Command xdsbench benchmarks xdsbridge against go-control-plane's
// SnapshotCache and LinearCache and against a floor, on the same workload,
// in one process, one after the other; see package bench.
//
//	xdsbench [--profile quick|full] [--systems xdsbridge,snapshot,linear,floor] [--out results] [--publish ../docs/perf] [--readme ../README.md]   (run in bench/)
//
// It prints a table of every figure with xdsbridge's ratio to each other
// system and writes results.json, table.txt and chart.png to a new
// directory under --out. With --publish it also writes the table and chart
// there as PROFILE.md and PROFILE.png, and with --readme it rewrites the
// README's generated Performance table: headline figures and every target,
// met or missed.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/xdsbridge/xdsbridge/bench"
	"github.com/xdsbridge/xdsbridge/bench/fleet"
	"github.com/xdsbridge/xdsbridge/bench/synth"
	"github.com/xdsbridge/xdsbridge/sdk"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "plugin":
			// Hidden: the plugin host runs the synthetic source this way. A
			// driver that died cannot stop it: it exits when the driver's
			// control socket closes.
			sdk.Serve(synth.Plugin(version, func() { os.Exit(3) }))
			return 0
		case "clients":
			// Hidden: the benchmark runs its clients in a process of their own.
			logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			if err := fleet.ServeRPC(os.Stdin, os.Stdout, logger); err != nil {
				fmt.Fprintf(stderr, "xdsbench clients: %v\n", err)
				return 1
			}
			return 0
		}
	}
	if err := cmdBench(ctx, args, stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "xdsbench: %v\n", err)
		return 1
	}
	return 0
}

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("xdsbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: xdsbench [flags]

Benchmarks xdsbridge against go-control-plane's SnapshotCache and LinearCache
and against a floor (each resource marshalled once, the same bytes written to
every stream), on the same workload, one after the other. Prints a table with
xdsbridge's ratio to each; writes results.json, table.txt and chart.png to a
new directory under --out.

Flags:
`)
		fs.PrintDefaults()
	}
	profileName := fs.String("profile", "quick", "quick (a few minutes), full (the targets' sizes throughout), or tiny (seconds, for tests)")
	systemList := fs.String("systems", strings.Join(bench.SystemNames(), ","), "systems to run, comma-separated")
	out := fs.String("out", "results", "directory for the run's results (a new subdirectory per run)")
	publish := fs.String("publish", "", "also write the table and chart here, as PROFILE.md and PROFILE.png")
	readme := fs.String("readme", "", "also rewrite this file's generated section (the README's Performance table): headline figures and every target, met or missed")
	scenarioList := fs.String("scenarios", strings.Join(bench.ScenarioNames(), ","), "scenarios to run, comma-separated")
	noRateLimit := fs.Bool("no-rate-limit", false, "turn off xdsbridge's default request rate limits")
	profileDir := fs.String("pprof", "", "write CPU and heap profiles of each scenario and system to this directory")
	fleetSnapshot := fs.Bool("fleet-snapshot", false, "run SnapshotCache in the fleet scenario too (left out by default: minutes at 1,000 clients)")
	inProcess := fs.Bool("in-process-clients", false, "run the clients in this process (their CPU and memory then count as the control plane's)")
	logLevel := fs.String("log-level", "warn", "log level of the systems under test: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	profile, err := bench.ProfileByName(*profileName)
	if err != nil {
		return err
	}
	if *fleetSnapshot {
		profile.Fleet.SkipSnapshot = false
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if *profileDir != "" {
		if err := os.MkdirAll(*profileDir, 0o755); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}

	var pool fleet.Pool
	if *inProcess {
		pool = fleet.NewLocal(logger.With("component", "fleet"))
	} else {
		remote, err := fleet.Spawn([]string{self, "clients"}, stderr)
		if err != nil {
			return err
		}
		pool = remote
	}
	defer pool.Close()

	res, err := bench.Run(ctx, bench.Options{
		Profile:       profile,
		Systems:       strings.Split(*systemList, ","),
		Scenarios:     strings.Split(*scenarioList, ","),
		NoRateLimit:   *noRateLimit,
		ProfileDir:    *profileDir,
		PluginCommand: []string{self, "plugin"},
		Pool:          pool,
		Logger:        logger,
		Progress:      stderr,
	})
	if res == nil {
		return err
	}
	if err != nil {
		fmt.Fprintf(stderr, "xdsbench: run cut short: %v\n", err)
	}
	dir := filepath.Join(*out, profile.Name+"-"+res.Started.Format("20060102-150405"))
	if werr := writeResults(dir, res); werr != nil {
		return werr
	}
	var table bytes.Buffer
	if err := res.Table(&table); err != nil {
		return err
	}
	fmt.Fprintln(stdout, header(res))
	fmt.Fprintln(stdout)
	stdout.Write(table.Bytes())
	fmt.Fprintf(stderr, "results: %s\n", dir)
	if *publish != "" {
		if err := publishResults(*publish, res, table.Bytes()); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "published: %s\n", filepath.Join(*publish, profile.Name+".{md,png}"))
	}
	if *readme != "" {
		source := ""
		if *publish != "" {
			if rel, rerr := filepath.Rel(filepath.Dir(*readme), filepath.Join(*publish, profile.Name+".md")); rerr == nil {
				source = filepath.ToSlash(rel)
			}
		}
		if rerr := updateReadme(*readme, res, source); rerr != nil {
			return rerr
		}
		fmt.Fprintf(stderr, "updated: %s\n", *readme)
	}
	return err
}

func header(res *bench.Results) string {
	return fmt.Sprintf("xdsbench %s profile, %s, %d CPUs, %s, took %v",
		res.Profile, res.Started.Format(time.DateOnly), res.Host.CPUs, res.Host.GoVersion, res.Duration.Round(time.Second))
}

func writeResults(dir string, res *bench.Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var js, table, chart bytes.Buffer
	if err := res.JSON(&js); err != nil {
		return err
	}
	if err := res.Table(&table); err != nil {
		return err
	}
	files := map[string][]byte{"results.json": js.Bytes(), "table.txt": append([]byte(header(res)+"\n\n"), table.Bytes()...)}
	if err := res.Chart(&chart); err == nil {
		files["chart.png"] = chart.Bytes()
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// publishResults writes the table as Markdown and the chart, for the
// README's Performance section.
func publishResults(dir string, res *bench.Results, table []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var md bytes.Buffer
	fmt.Fprintf(&md, "# xdsbench, %s profile\n\n", res.Profile)
	fmt.Fprintf(&md, "%s. Regenerate with `make bench`.\n\n", header(res))
	fmt.Fprintf(&md, "(1) xdsbridge through its plugin protocol, (2) go-control-plane SnapshotCache, one shared snapshot rebuilt per change, "+
		"(3) go-control-plane LinearCache + MuxCache, (4) floor: each resource marshalled once, the same bytes written to every stream. "+
		"Ratios are (1) divided by the others: below 1, xdsbridge is faster or smaller.\n\n")
	fmt.Fprintf(&md, "![full push: latency and CPU against clients](%s.png)\n\n", res.Profile)
	md.WriteString("```\n")
	md.Write(table)
	md.WriteString("```\n")
	if err := os.WriteFile(filepath.Join(dir, res.Profile+".md"), md.Bytes(), 0o644); err != nil {
		return err
	}
	var chart bytes.Buffer
	if err := res.Chart(&chart); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, res.Profile+".png"), chart.Bytes(), 0o644)
}

// updateReadme rewrites the generated section of the file at path.
func updateReadme(path string, res *bench.Results, source string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var section bytes.Buffer
	if err := res.Markdown(&section, source); err != nil {
		return err
	}
	out, err := bench.SpliceReadme(doc, section.Bytes())
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, out, 0o644)
}
