package static

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xdsbridge/xdsbridge/sdk"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait bounds every wait for an update.
const wait = 5 * time.Second

// quietFor is how long a test watches for an update that must not come:
// several debounce periods.
const quietFor = 300 * time.Millisecond

const (
	fileA = "clusters:\n  - name: a\n    endpoints:\n      - {address: 10.0.0.1, port: 80}\n"
	fileB = "clusters:\n  - name: b\n    endpoints:\n      - {address: 10.0.0.2, port: 81}\n"
	fileC = "clusters:\n  - name: c\n    endpoints:\n      - {address: 10.0.0.3, port: 82}\n"
	// fileBad has two problems.
	fileBad = "clusters:\n  - name: a\n    endpoints:\n      - {address: nowhere, port: 0}\n"
)

// run starts a Source on path and returns its updates. The source is
// stopped, and Run's return checked, when the test ends (or on stop()).
func run(t *testing.T, path string) (<-chan sdk.Update, func()) {
	t.Helper()
	s, err := New(Config{Path: path}, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	up := make(chan sdk.Update)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, up) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v, want nil", err)
				}
			case <-time.After(wait):
				t.Errorf("Run did not return %v after its context ended", wait)
			}
		})
	}
	t.Cleanup(stop)
	return up, stop
}

func next(t *testing.T, up <-chan sdk.Update) sdk.Update {
	t.Helper()
	select {
	case u := <-up:
		return u
	case <-time.After(wait):
		t.Fatalf("no update within %v", wait)
		return sdk.Update{}
	}
}

func quiet(t *testing.T, up <-chan sdk.Update) {
	t.Helper()
	select {
	case u := <-up:
		t.Fatalf("unexpected update %+v", u)
	case <-time.After(quietFor):
	}
}

// wantFull checks that u is a full state serving exactly cluster name,
// with the given status attached (nil for none).
func wantFull(t *testing.T, u sdk.Update, name string, status *sdk.Status) {
	t.Helper()
	if !u.Full || len(u.Clusters) != 1 || u.Clusters[0].Name != name {
		t.Fatalf("got %+v, want a full state with cluster %q", u, name)
	}
	switch {
	case status == nil && u.Status != nil:
		t.Errorf("status %+v, want none", *u.Status)
	case status != nil && (u.Status == nil || *u.Status != *status):
		t.Errorf("status %v, want %+v", u.Status, *status)
	}
}

func wantDisconnected(t *testing.T, u sdk.Update, reason string) {
	t.Helper()
	if u.Full || u.Clusters != nil || u.Resources != nil || u.Status == nil || u.Status.State != sdk.Disconnected {
		t.Fatalf("got %+v, want a Disconnected status alone", u)
	}
	if u.Status.Reason != reason {
		t.Errorf("reason %q, want %q", u.Status.Reason, reason)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replace puts data at path by an atomic rename, as editors and config
// management tools do.
func replace(t *testing.T, path, data string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	write(t, tmp, data)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

var connected = &sdk.Status{State: sdk.Connected}

func TestRunLifecycle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clusters.yaml")
	write(t, path, fileA)
	up, stop := run(t, path)

	// start: the full state comes first
	wantFull(t, next(t, up), "a", connected)

	// edit in place
	write(t, path, fileB)
	wantFull(t, next(t, up), "b", nil)

	// atomic rename over the file
	replace(t, path, fileC)
	wantFull(t, next(t, up), "c", nil)

	// invalid content: a status alone, the state stays
	write(t, path, fileBad)
	wantDisconnected(t, next(t, up), path+`:4: clusters[0].endpoints[0].address: "nowhere" is not an IP address (the static plugin does not resolve host names) (and 1 more problems)`)
	quiet(t, up)

	// fixed: the full state and Connected
	write(t, path, fileA)
	wantFull(t, next(t, up), "a", connected)

	// ctx cancel: Run returns (checked by stop)
	stop()
}

func TestRunNoChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clusters.yaml")
	write(t, path, fileA)
	up, _ := run(t, path)
	wantFull(t, next(t, up), "a", connected)

	// The same bytes, a change that serves the same, and other files in
	// the directory send nothing.
	write(t, path, fileA)
	quiet(t, up)
	write(t, path, "# a comment\n"+fileA)
	quiet(t, up)
	write(t, filepath.Join(filepath.Dir(path), "other.yaml"), fileB)
	quiet(t, up)

	write(t, path, fileB)
	wantFull(t, next(t, up), "b", nil)
}

func TestRunInvalidAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clusters.yaml")
	write(t, path, "clusters: [")
	up, _ := run(t, path)
	u := next(t, up)
	wantDisconnected(t, u, path+":1: yaml: did not find expected node content")

	// another invalid version: a new reason
	write(t, path, "")
	wantDisconnected(t, next(t, up), path+":1: file is empty (write `clusters: []` to serve nothing)")

	write(t, path, fileA)
	wantFull(t, next(t, up), "a", connected)
}

func TestRunMissingFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "clusters.yaml")
	up, _ := run(t, path)
	wantDisconnected(t, next(t, up), path+": no such file or directory")

	write(t, path, fileA)
	wantFull(t, next(t, up), "a", connected)

	// removed: reported once Run has looked twice
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	wantDisconnected(t, next(t, up), path+": no such file or directory")
	quiet(t, up)

	// back with the same contents: served again, with Connected
	write(t, path, fileA)
	wantFull(t, next(t, up), "a", connected)
}

// TestRunReplaceByMove covers editors that move the old file away and
// write a new one: no Disconnected status in between.
func TestRunReplaceByMove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clusters.yaml")
	write(t, path, fileA)
	up, _ := run(t, path)
	wantFull(t, next(t, up), "a", connected)

	if err := os.Rename(path, path+"~"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(debounce + debounce/2) // the first look finds nothing
	write(t, path, fileB)
	wantFull(t, next(t, up), "b", nil)
}

// TestRunConfigMap swaps the ..data symlink as the kubelet updates a
// mounted ConfigMap: the file's own name sees no event.
func TestRunConfigMap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, data string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name, "clusters.yaml"), data)
	}
	symlink := func(target, name string) {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	version("..2024_01", fileA)
	symlink("..2024_01", "..data")
	symlink("..data/clusters.yaml", "clusters.yaml")

	up, _ := run(t, filepath.Join(dir, "clusters.yaml"))
	wantFull(t, next(t, up), "a", connected)

	version("..2024_02", fileB)
	symlink("..2024_02", "..data_tmp")
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2024_01")); err != nil {
		t.Fatal(err)
	}
	wantFull(t, next(t, up), "b", nil)
}

// TestRunSlowReceiver checks that Run does not block its shutdown on a
// receiver that stopped reading.
func TestRunSlowReceiver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clusters.yaml")
	write(t, path, fileA)
	_, stop := run(t, path) // nobody reads the first update
	time.Sleep(2 * debounce)
	stop()
}

func TestRunTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clusters.yaml")
	write(t, path, fileA)
	s, err := New(Config{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	up := make(chan sdk.Update, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, up) }()
	<-up
	if err := s.Run(ctx, up); err == nil {
		t.Error("a second Run on a running Source returned nil")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Run did not return")
	}
}

func TestRunUnwatchableDirectory(t *testing.T) {
	s, err := New(Config{Path: filepath.Join(t.TempDir(), "missing", "clusters.yaml")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.Run(ctx, make(chan sdk.Update)); err == nil {
		t.Error("Run on a file in a missing directory returned nil")
	}
}
