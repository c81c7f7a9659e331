package sdktest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// BadConfig is a configuration the plugin must reject.
type BadConfig struct {
	// Config is the `config` block, as YAML.
	Config string
	// WantPath is the field path one of the plugin's errors must name, e.g.
	// "tls.ca_file". Empty accepts any error that says where: a non-empty
	// Path, or a File.
	WantPath string
}

// CancelGrace is how long Source.Run may take to return once its context
// ends before Conformance counts it as not returning.
const CancelGrace = 5 * time.Second

// Conformance runs the standard checks against the plugin in opts.Command,
// each in a subtest with a process of its own:
//
//   - validate_only: Info is sane (a name, a version, API version 1) and a
//     ValidateOnly Configure of opts.Config reports no problem;
//   - first_update: the plugin accepts opts.Config, and the first update
//     that carries data, within opts.Timeout, is a full state that passes
//     CheckUpdate (status-only updates may come before it);
//   - run_returns_on_cancel: after the host cancels the Watch stream,
//     Source.Run returns within CancelGrace (a second Watch is then
//     accepted);
//   - liveness: a source that makes a liveness promise (sdk.Liveness)
//     sends something within MaxSilence, three times in a row after its
//     full state; checked when MaxSilence is no longer than opts.Timeout
//     (configure short periods for the test), logged as unchecked otherwise;
//   - bad_config: each of bad is rejected, by a ValidateOnly Configure with
//     at least one error that says where (see BadConfig.WantPath), and by a
//     real Configure too.
//
// opts.Config must be a configuration under which the plugin reaches its
// registry (point it at a fake one) and sends a full state.
func Conformance(t *testing.T, opts Options, bad ...BadConfig) {
	t.Helper()
	t.Run("validate_only", func(t *testing.T) { checkValidateOnly(t, opts) })
	t.Run("first_update", func(t *testing.T) { checkFirstUpdate(t, opts) })
	t.Run("run_returns_on_cancel", func(t *testing.T) { checkCancel(t, opts, CancelGrace) })
	t.Run("liveness", func(t *testing.T) { checkLiveness(t, opts) })
	if len(bad) == 0 {
		return
	}
	t.Run("bad_config", func(t *testing.T) {
		for _, b := range bad {
			name := b.WantPath
			if name == "" {
				name = "any_path"
			}
			t.Run(name, func(t *testing.T) { checkBadConfig(t, opts, b) })
		}
	})
}

func checkValidateOnly(t testing.TB, opts Options) {
	t.Helper()
	if problems := ConfigureErrors(t, opts); len(problems) > 0 {
		t.Errorf("sdktest: a validate-only Configure of Options.Config reported problems:\n%s", formatFieldErrors(problems))
	}
}

func checkFirstUpdate(t testing.TB, opts Options) {
	t.Helper()
	p := Start(t, opts)
	// Next reports a change set before the first full state, and every
	// problem CheckUpdate finds.
	u := p.NextData(t, 0)
	if !u.Full {
		t.Errorf("sdktest: the first update with data is a change set; want a full state first")
	}
}

// checkLiveness checks that a source keeps the liveness promise it made.
func checkLiveness(t testing.TB, opts Options) {
	t.Helper()
	p := Start(t, opts)
	p.NextData(t, 0)
	d := p.MaxSilence()
	switch {
	case d <= 0:
		return // no promise: it may be silent forever
	case d > p.opts.Timeout:
		t.Logf("sdktest: liveness not checked: MaxSilence %s is longer than Options.Timeout %s", d, p.opts.Timeout)
		return
	}
	for i := range 3 {
		timer := time.NewTimer(d)
		select {
		case u := <-p.updates:
			timer.Stop()
			p.apply(t, u)
		case <-p.done:
			timer.Stop()
			t.Fatalf("sdktest: %v", p.endErr())
		case <-timer.C:
			t.Fatalf("sdktest: the source promised to send something within every %s (sdk.Liveness) but was silent for %s (report %d of 3 after its full state); with nothing new, repeat the status",
				d, d, i+1)
		}
	}
}

// checkCancel checks that Run returns within grace of its context ending.
func checkCancel(t testing.TB, opts Options, grace time.Duration) {
	t.Helper()
	p := Start(t, opts)
	p.NextData(t, 0)
	p.stopWatch()

	deadline := time.Now().Add(grace)
	for {
		err := p.rewatch(t.Context())
		if err == nil {
			return
		}
		if status.Code(err) != codes.AlreadyExists {
			t.Fatalf("sdktest: a second Watch after the first was cancelled failed: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("sdktest: Source.Run did not return within %s after its context ended: a second Watch still finds the first one running", grace)
		}
		wait := time.NewTimer(20 * time.Millisecond)
		select {
		case <-t.Context().Done():
			wait.Stop()
			return
		case <-wait.C:
		}
	}
}

func checkBadConfig(t testing.TB, opts Options, b BadConfig) {
	t.Helper()
	opts.Config = b.Config
	p := launch(t, opts)
	defer p.Kill()
	ctx, cancel := context.WithTimeout(t.Context(), p.opts.Timeout)
	defer cancel()

	problems, err := p.conn.Configure(ctx, true)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	if err := checkFieldErrors(problems, b.WantPath); err != nil {
		t.Errorf("sdktest: validate-only Configure of this config:\n%s\n%v", indent(b.Config), err)
	}

	problems, err = p.conn.Configure(ctx, false)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	if len(problems) == 0 {
		t.Errorf("sdktest: Configure (not validate-only) accepted this config, which validate-only rejects:\n%s", indent(b.Config))
	}
}

// checkFieldErrors says what is wrong with the errors a plugin reported for
// a bad configuration.
func checkFieldErrors(problems []sdk.FieldError, wantPath string) error {
	if len(problems) == 0 {
		return fmt.Errorf("the plugin accepted it; want at least one error")
	}
	var lines []string
	for i, e := range problems {
		if strings.TrimSpace(e.Message) == "" {
			lines = append(lines, fmt.Sprintf("error %d (path %q) has no message", i, e.Path))
		}
	}
	found := false
	for _, e := range problems {
		if wantPath != "" && e.Path == wantPath || wantPath == "" && (e.Path != "" || e.File != "") {
			found = true
		}
	}
	if !found {
		want := fmt.Sprintf("an error at path %q", wantPath)
		if wantPath == "" {
			want = "an error that says where (a path or a file)"
		}
		lines = append(lines, fmt.Sprintf("want %s; got:\n%s", want, formatFieldErrors(problems)))
	}
	if len(lines) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(lines, "\n"))
}

func indent(s string) string {
	return "\t" + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n\t")
}

// stopWatch cancels the Watch stream and waits for its goroutine.
func (p *Plugin) stopWatch() {
	p.mu.Lock()
	watching := p.watching
	p.mu.Unlock()
	p.cancel()
	if watching {
		<-p.done
	}
}

// rewatch opens a second Watch stream and closes it at the first update or
// after a second. It returns nil when the plugin accepted the stream.
func (p *Plugin) rewatch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return p.conn.Watch(ctx, func(sdk.Update) { cancel() })
}
