package bench_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/xdsbridge/xdsbridge/bench/fleet"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binDir    string
	binary    string
	buildErr  error
)

// benchBinary builds bench/cmd/xdsbench once: the synthetic plugin and the client
// process are its hidden subcommands. Tests that need it are skipped with
// -short.
func benchBinary(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("builds and runs the xdsbench binary")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "bench-test")
		if buildErr != nil {
			return
		}
		binary = filepath.Join(binDir, "xdsbench")
		out, err := exec.CommandContext(context.Background(), "go", "build", "-o", binary, "github.com/xdsbridge/xdsbridge/bench/cmd/xdsbench").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%w\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatalf("build xdsbench: %v", buildErr)
	}
	return binary
}

// spawnClients builds cmd/xdsbench and starts its client process, which
// is stopped when the test ends.
func spawnClients(t *testing.T) (bin string, pool *fleet.Remote) {
	t.Helper()
	bin = benchBinary(t)
	pool, err := fleet.Spawn([]string{bin, "clients"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pool.Close(); err != nil {
			t.Error(err)
		}
	})
	return bin, pool
}
