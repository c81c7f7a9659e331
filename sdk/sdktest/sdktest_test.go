package sdktest

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// wait bounds every wait for an update in these tests.
const wait = 10 * time.Second

// The scripted plugin's configurations.
const (
	goodConfig = `
updates:
  - status: disconnected
    reason: registry not reached yet
  - full: true
    status: connected
    clusters:
      - name: a
        endpoints: [{address: 10.0.0.1, port: 80}, {address: "2001:db8::1", port: 80, health: 1}]
      - name: b
        endpoints: [{address: 10.0.0.2, port: 8080}]
    listeners: [l1]
  - clusters:
      - name: c
        endpoints: [{address: 10.0.0.3, port: 443}]
    removed: [a]
  - status: disconnected
    reason: registry went away
`
	changeFirstConfig = `
updates:
  - clusters: [{name: a, endpoints: [{address: 10.0.0.1, port: 80}]}]
`
	badEndpointConfig = `
updates:
  - full: true
    clusters: [{name: a, endpoints: [{address: web.example.com, port: 80}]}]
`
	failConfig = `
updates:
  - full: true
fail: registry exploded
`
)

func TestKit(t *testing.T) {
	bin := Build(t, "./internal/testplugin")
	opts := func(config string, args ...string) Options {
		return Options{Command: append([]string{bin}, args...), Config: config, Timeout: wait}
	}

	t.Run("conformance passes", func(t *testing.T) {
		Conformance(t, opts(goodConfig),
			BadConfig{Config: "port: 70000\n", WantPath: "port"},
			BadConfig{Config: "prot: 1\n", WantPath: "prot"},
			BadConfig{Config: "port: [1]\n"},
		)
	})

	t.Run("liveness kept", func(t *testing.T) {
		checkLiveness(t, opts(goodConfig+"max_silence: 300ms\nbeat: 50ms\n"))
	})

	t.Run("scenario", func(t *testing.T) {
		p := Start(t, opts(goodConfig))
		if name, version := p.Info(); name != "testplugin" || version != "1.0.0" {
			t.Errorf("Info() = %q, %q; want testplugin, 1.0.0", name, version)
		}
		u := p.Next(t, wait)
		if u.Status == nil || u.Status.State != sdk.Disconnected || hasData(u) {
			t.Fatalf("first update: %s; want status disconnected alone", Describe(u))
		}
		u = p.NextData(t, wait)
		if !u.Full || len(u.Resources) != 1 {
			t.Fatalf("second update: %s; want the full state with one listener", Describe(u))
		}
		if got := clusterNames(p.Clusters()); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("clusters after the full state: %v; want [a b]", got)
		}
		if got := p.Clusters()[0].Endpoints[1]; got.Address != "2001:db8::1" || got.Health != sdk.Healthy {
			t.Errorf("a's second endpoint: %+v", got)
		}
		if st := p.Status(); st.State != sdk.Connected {
			t.Errorf("Status() = %v; want connected", st)
		}
		u = p.NextData(t, wait)
		if u.Full || !slices.Equal(u.RemovedClusters, []string{"a"}) {
			t.Fatalf("third update: %s; want a change set removing a", Describe(u))
		}
		if got := clusterNames(p.Clusters()); !slices.Equal(got, []string{"b", "c"}) {
			t.Fatalf("clusters after the change set: %v; want [b c]", got)
		}
		if st := p.NextStatus(t, wait); st.State != sdk.Disconnected || st.Reason != "registry went away" {
			t.Fatalf("status: %+v; want disconnected, registry went away", st)
		}
		p.Quiet(t, 100*time.Millisecond)
		if got := clusterNames(p.Clusters()); !slices.Equal(got, []string{"b", "c"}) {
			t.Fatalf("clusters after going disconnected: %v; want them kept", got)
		}
		p.Kill()
		p.Kill() // idempotent
	})

	t.Run("configure errors", func(t *testing.T) {
		tests := []struct {
			config string
			want   []sdk.FieldError
		}{
			{config: goodConfig},
			{config: "port: 70000\n", want: []sdk.FieldError{{Path: "port", Message: "70000 is out of range 1-65535"}}},
			{config: "updates: [{ful: true}]\n", want: []sdk.FieldError{{Path: "updates[0].ful", Message: `unknown key "ful" (did you mean "full"?)`}}},
		}
		for _, tt := range tests {
			got := ConfigureErrors(t, opts(tt.config))
			if !slices.Equal(got, tt.want) {
				t.Errorf("ConfigureErrors(%q) = %+v; want %+v", tt.config, got, tt.want)
			}
		}
	})

	// The rest check that sdktest fails a test when it should.
	failures := []struct {
		name string
		run  func(tb testing.TB)
		want string
	}{
		{
			name: "change set first",
			run:  func(tb testing.TB) { Start(tb, opts(changeFirstConfig)).Next(tb, wait) },
			want: "change set (change set, clusters a(1)) before its first full state",
		},
		{
			name: "bad endpoint",
			run:  func(tb testing.TB) { Start(tb, opts(badEndpointConfig)).Next(tb, wait) },
			want: "address is not an IP address",
		},
		{
			name: "stream ends",
			run: func(tb testing.TB) {
				p := Start(tb, opts(failConfig))
				p.Next(tb, wait)
				p.Next(tb, wait)
			},
			want: "registry exploded",
		},
		{
			name: "no update in time",
			run:  func(tb testing.TB) { Start(tb, opts("")).Next(tb, 200*time.Millisecond) },
			want: "no update from the plugin within 200ms",
		},
		{
			name: "next data skips status but not forever",
			run: func(tb testing.TB) {
				Start(tb, opts("updates: [{status: connected}]")).NextData(tb, 300*time.Millisecond)
			},
			want: "no update from the plugin within 300ms",
		},
		{
			name: "not quiet",
			run:  func(tb testing.TB) { Start(tb, opts(goodConfig)).Quiet(tb, wait) },
			want: "expected no update for 10s, got status only, status disconnected (registry not reached yet)",
		},
		{
			name: "next after kill",
			run: func(tb testing.TB) {
				p := Start(tb, opts(goodConfig))
				p.Kill()
				p.Next(tb, wait)
			},
			want: "the plugin was killed",
		},
		{
			name: "empty version",
			run:  func(tb testing.TB) { Start(tb, opts("", "-version=")) },
			want: "empty version",
		},
		{
			name: "rejected configuration",
			run:  func(tb testing.TB) { Start(tb, opts("port: 0x10000\n")) },
			want: "rejected its configuration:\n\tport: 65536 is out of range",
		},
		{
			name: "no such binary",
			run: func(tb testing.TB) {
				Start(tb, Options{Command: []string{filepath.Join(tb.TempDir(), "missing")}, Timeout: wait})
			},
			want: "missing",
		},
		{
			name: "no command",
			run:  func(tb testing.TB) { Start(tb, Options{}) },
			want: "Options.Command is empty",
		},
		{
			name: "first data is a change set",
			run:  func(tb testing.TB) { checkFirstUpdate(tb, opts(changeFirstConfig)) },
			want: "want a full state first",
		},
		{
			name: "run ignores cancel",
			run:  func(tb testing.TB) { checkCancel(tb, opts(goodConfig+"ignore_cancel: true\n"), 500*time.Millisecond) },
			want: "Source.Run did not return within 500ms",
		},
		{
			name: "liveness promise broken",
			run:  func(tb testing.TB) { checkLiveness(tb, opts(goodConfig+"max_silence: 300ms\n")) },
			want: "promised to send something within every 300ms",
		},
		{
			name: "validate-only rejects good config",
			run:  func(tb testing.TB) { checkValidateOnly(tb, opts("port: 70000\n")) },
			want: "port: 70000 is out of range",
		},
		{
			name: "bad config accepted",
			run:  func(tb testing.TB) { checkBadConfig(tb, opts(""), BadConfig{Config: "port: 80\n"}) },
			want: "the plugin accepted it",
		},
		{
			name: "bad config at another path",
			run:  func(tb testing.TB) { checkBadConfig(tb, opts(""), BadConfig{Config: "port: 70000\n", WantPath: "url"}) },
			want: `want an error at path "url"`,
		},
		{
			name: "bad config error says not where",
			run:  func(tb testing.TB) { checkBadConfig(tb, opts(""), BadConfig{Config: "unplaced: true\n"}) },
			want: "says where",
		},
		{
			name: "bad config applied anyway",
			run:  func(tb testing.TB) { checkBadConfig(tb, opts(""), BadConfig{Config: "port: 70000\nlax_apply: true\n"}) },
			want: "Configure (not validate-only) accepted this config",
		},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			wantFailure(t, runFake(t, tt.run), tt.want)
		})
	}
}

func clusterNames(cs []sdk.Cluster) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}
