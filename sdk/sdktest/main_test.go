package sdktest

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeTB records failures instead of failing the real test, so that tests
// can check that sdktest fails a test when it should. Everything else goes
// to the real test.
type fakeTB struct {
	testing.TB
	mu     sync.Mutex
	errs   []string
	failed bool
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) record(msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, msg)
	f.failed = true
	f.TB.Log("(expected failure) " + msg)
}

func (f *fakeTB) Error(args ...any)                 { f.record(fmt.Sprint(args...)) }
func (f *fakeTB) Errorf(format string, args ...any) { f.record(fmt.Sprintf(format, args...)) }
func (f *fakeTB) Fail()                             { f.record("Fail") }
func (f *fakeTB) Fatal(args ...any)                 { f.record(fmt.Sprint(args...)); runtime.Goexit() }
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.record(fmt.Sprintf(format, args...))
	runtime.Goexit()
}
func (f *fakeTB) FailNow() { f.record("FailNow"); runtime.Goexit() }

func (f *fakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// messages returns everything recorded, one message a line.
func (f *fakeTB) messages() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.errs, "\n")
}

// runFake runs fn with a fakeTB in a goroutine of its own (Fatal ends that
// goroutine) and returns the fake once fn is done. fn's own deadlines bound
// the wait.
func runFake(t *testing.T, fn func(tb testing.TB)) *fakeTB {
	t.Helper()
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

// wantFailure checks that f failed with a message containing want.
func wantFailure(t *testing.T, f *fakeTB, want string) {
	t.Helper()
	if !f.Failed() {
		t.Fatalf("sdktest did not fail the test; want a failure mentioning %q", want)
	}
	if got := f.messages(); !strings.Contains(got, want) {
		t.Fatalf("failure messages:\n%s\nwant one mentioning %q", got, want)
	}
}
