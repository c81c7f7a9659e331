// Command xdsbridge feeds service discovery into Envoy and proxyless gRPC
// over xDS.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `xdsbridge feeds service discovery into Envoy and proxyless gRPC over xDS v3.

Usage:
  xdsbridge run      --config FILE   serve xDS from the sources in FILE
  xdsbridge validate --config FILE   check FILE and every plugin's config; print every problem as FILE:LINE: message
  xdsbridge version                  print the version

Run 'xdsbridge COMMAND --help' for a command's flags.
The default configuration file is plugins.yaml in the current directory.
`

func main() {
	if len(os.Args) > 1 && os.Args[1] == "plugin" {
		// A built-in plugin: sdk.Serve handles signals itself (SIGTERM
		// stops the source and exits; SIGINT is ignored, so that Ctrl-C
		// reaches the host, which stops its plugins).
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage marks an error whose message has been printed with usage.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = cmdRun(ctx, rest, stderr)
	case "validate":
		err = cmdValidate(ctx, rest, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "xdsbridge %s\n", version)
	case "plugin":
		// Hidden: the plugin host starts built-in plugins this way.
		err = cmdPlugin(rest, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "xdsbridge: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "xdsbridge: %v\n", err)
		return 1
	}
}
