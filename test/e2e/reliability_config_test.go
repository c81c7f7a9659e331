package e2e

// Broken configuration: plugins.yaml files and the files plugins read.
// `xdsbridge validate` must report each problem as FILE:LINE: message, and
// `xdsbridge run` must exit non-zero with the same lines.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// listenAnywhere is the head of plugins.yaml for cases that get as far as
// starting plugins: every listener on a free port (5 lines).
const listenAnywhere = "xds:\n  grpc_address: 127.0.0.1:0\n  rest_address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\n"

// staticAt is a static plugin entry for a cluster file, after listenAnywhere
// (the entry starts on line 7).
func staticAt(file string) string {
	return listenAnywhere + "plugins:\n  - name: files\n    type: static\n    config:\n      path: " + file + "\n"
}

type configCase struct {
	name  string
	files map[string]string
	// want are substrings, each expected on some FILE:LINE line of the
	// output; the first is usually the FILE:LINE itself.
	want []string
	// plugin marks a problem only a plugin sees (its config block, its
	// files): config.Load accepts the file.
	plugin bool
	setup  func(t *testing.T, dir string)
	// exact is the FILE:LINE the problem is at, where the yaml package's
	// own message names no line or another one.
	exact string
}

func brokenConfigs() []configCase {
	good := "clusters:\n  - name: a\n    endpoints:\n      - {address: 10.0.0.1, port: 80}\n"
	return []configCase{
		// plugins.yaml itself.
		{name: "tab indentation", files: map[string]string{"plugins.yaml": "plugins:\n\t- name: x\n"}, want: []string{"plugins.yaml:2: "}},
		{name: "unclosed flow sequence", files: map[string]string{"plugins.yaml": "plugins: [\n  {name: x, type: static}\n"}, want: []string{"plugins.yaml:"}},
		{name: "bad indentation", files: map[string]string{"plugins.yaml": "xds:\n  grpc_address: 127.0.0.1:1\n   rest_address: 127.0.0.1:2\n"}, want: []string{"plugins.yaml:3: "}},
		{name: "top-level list", files: map[string]string{"plugins.yaml": "- name: x\n  type: static\n"}, want: []string{"plugins.yaml:1: "}},
		{name: "unknown top-level key", files: map[string]string{"plugins.yaml": "xdss:\n  grpc_address: 127.0.0.1:1\n"}, want: []string{"plugins.yaml:1: ", "xdss"}},
		{name: "unknown xds key", files: map[string]string{"plugins.yaml": "xds:\n  grpc_adress: 127.0.0.1:1\n"}, want: []string{"plugins.yaml:2: ", "grpc_adress", "grpc_address"}},
		{name: "unknown plugin key", files: map[string]string{"plugins.yaml": "plugins:\n  - name: x\n    comand: [/bin/true]\n"}, want: []string{"plugins.yaml:3: ", "comand", "command"}},
		{name: "unknown restart key", files: map[string]string{"plugins.yaml": "plugins:\n  - name: x\n    type: static\n    restart: {initial: 1s}\n"}, want: []string{"plugins.yaml:4: ", "initial"}},
		{name: "address without port", files: map[string]string{"plugins.yaml": "xds:\n  grpc_address: localhost\n"}, want: []string{"plugins.yaml:2: ", "port"}},
		{name: "port not a number", files: map[string]string{"plugins.yaml": "xds:\n  rest_address: 127.0.0.1:http\n"}, want: []string{"plugins.yaml:2: "}},
		{name: "port out of range", files: map[string]string{"plugins.yaml": "admin:\n  address: 127.0.0.1:70000\n"}, want: []string{"plugins.yaml:2: "}},
		{name: "address with two ports", files: map[string]string{"plugins.yaml": "xds:\n  grpc_address: 127.0.0.1:1:2\n"}, want: []string{"plugins.yaml:2: "}},
		{name: "address not a string", files: map[string]string{"plugins.yaml": "admin:\n  address: [127.0.0.1, 9902]\n"}, want: []string{"plugins.yaml:2: "}},
		{name: "listeners on one address", files: map[string]string{"plugins.yaml": "xds:\n  grpc_address: 127.0.0.1:7000\n  rest_address: 127.0.0.1:7000\n"}, want: []string{"plugins.yaml:3: "}},
		{name: "duplicate plugin names", files: map[string]string{"plugins.yaml": "plugins:\n  - name: x\n    type: static\n  - name: x\n    type: dns\n"}, want: []string{"plugins.yaml:4: ", `"x"`}},
		{name: "plugin without name", files: map[string]string{"plugins.yaml": "plugins:\n  - type: static\n"}, want: []string{"plugins.yaml:2: ", "name"}},
		{name: "bad plugin name", files: map[string]string{"plugins.yaml": "plugins:\n  - name: Bad Name!\n    type: static\n"}, want: []string{"plugins.yaml:2: "}},
		{name: "both type and command", files: map[string]string{"plugins.yaml": "plugins:\n  - name: x\n    type: static\n    command: [/bin/true]\n"}, want: []string{"plugins.yaml:"}},
		{name: "neither type nor command", files: map[string]string{"plugins.yaml": "plugins:\n  - name: x\n"}, want: []string{"plugins.yaml:2: "}},
		{name: "unknown plugin type", files: map[string]string{"plugins.yaml": "plugins:\n  - name: x\n    type: zookeeper\n"}, want: []string{"plugins.yaml:3: ", "zookeeper"}},
		{name: "missing plugin binary", files: map[string]string{"plugins.yaml": "plugins:\n  - name: x\n    command: [/nonexistent/xdsbridge-plugin]\n"}, want: []string{"plugins.yaml:3: ", "/nonexistent/xdsbridge-plugin"}},
		{name: "plugin binary not executable", files: map[string]string{"plugins.yaml": "plugins:\n  - name: x\n    command: [./notexec]\n", "notexec": "#!/bin/sh\n"},
			setup: func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, "notexec"), 0o644) }, want: []string{"plugins.yaml:3: ", "notexec"}},
		{name: "plugin binary is a directory", files: map[string]string{"plugins.yaml": "plugins:\n  - name: x\n    command: [./plugdir]\n", "plugdir/keep": ""}, want: []string{"plugins.yaml:3: ", "plugdir"}},
		{name: "plugin binary not in PATH", files: map[string]string{"plugins.yaml": "plugins:\n  - name: x\n    command: no-such-xdsbridge-plugin --flag\n"}, want: []string{"plugins.yaml:3: ", "no-such-xdsbridge-plugin"}},
		{name: "empty command", files: map[string]string{"plugins.yaml": "plugins:\n  - name: x\n    command: []\n"}, want: []string{"plugins.yaml:3: "}},
		{name: "command not a list or string", files: map[string]string{"plugins.yaml": "plugins:\n  - name: x\n    command: {path: /bin/true}\n"}, want: []string{"plugins.yaml:3: "}},
		{name: "sha256 not hex", files: map[string]string{"plugins.yaml": "plugins:\n  - name: x\n    command: [/bin/true]\n    sha256: xyz\n"}, want: []string{"plugins.yaml:4: ", "sha256"}},
		{name: "sha256 with a built-in type", files: map[string]string{"plugins.yaml": "plugins:\n  - name: x\n    type: static\n    sha256: " + strings.Repeat("ab", 32) + "\n"}, want: []string{"plugins.yaml:4: ", "sha256"}},
		{name: "backoff not a duration", files: map[string]string{"plugins.yaml": "plugins:\n  - name: x\n    type: static\n    restart: {initial_backoff: fast}\n"}, want: []string{"plugins.yaml:4: ", "fast"}},
		{name: "negative backoff", files: map[string]string{"plugins.yaml": "plugins:\n  - name: x\n    type: static\n    restart:\n      initial_backoff: -1s\n"}, want: []string{"plugins.yaml:5: "}},
		{name: "max backoff below initial", files: map[string]string{"plugins.yaml": "plugins:\n  - name: x\n    type: static\n    restart:\n      initial_backoff: 10s\n      max_backoff: 1s\n"}, want: []string{"plugins.yaml:6: "}},
		{name: "debounce not a scalar", files: map[string]string{"plugins.yaml": "aggregator:\n  debounce: [10ms]\n"}, want: []string{"plugins.yaml:2: ", "debounce"}},
		{name: "ready timeout not a duration", files: map[string]string{"plugins.yaml": "aggregator:\n  ready_timeout: forever\n"}, want: []string{"plugins.yaml:2: ", "forever"}},
		{name: "plugins not a list", files: map[string]string{"plugins.yaml": "plugins:\n  name: x\n  type: static\n"}, want: []string{"plugins.yaml:1: ", "list"}},
		{name: "plugin entry not a mapping", files: map[string]string{"plugins.yaml": "plugins:\n  - static\n"}, want: []string{"plugins.yaml:2: "}},
		{name: "config block not a mapping", files: map[string]string{"plugins.yaml": "plugins:\n  - name: x\n    type: static\n    config: clusters.yaml\n"}, want: []string{"plugins.yaml:4: ", "config"}},
		{name: "duplicate keys", files: map[string]string{"plugins.yaml": "xds:\n  grpc_address: 127.0.0.1:1\n  grpc_address: 127.0.0.1:2\n"}, want: []string{"plugins.yaml:3: "}},
		{name: "unknown anchor", files: map[string]string{"plugins.yaml": "plugins:\n  - *nothing\n"}, want: []string{"plugins.yaml:", "nothing"}, exact: "plugins.yaml:2: "},
		{name: "second document", files: map[string]string{"plugins.yaml": "plugins: []\n---\nplugins: []\n"}, want: []string{"plugins.yaml:"}},
		{name: "non-scalar key", files: map[string]string{"plugins.yaml": "? [a, b]\n: c\n"}, want: []string{"plugins.yaml:1: "}},
		{name: "section not a mapping", files: map[string]string{"plugins.yaml": "xds: 5\nadmin: []\n"}, want: []string{"plugins.yaml:1: ", "plugins.yaml:2: "}},
		{name: "many problems", files: map[string]string{"plugins.yaml": "xds:\n  grpc_address: nope\nadmn: {}\nplugins:\n  - name: x\n    type: nosuch\n  - name: x\n    type: static\n"},
			want: []string{"plugins.yaml:2: ", "plugins.yaml:3: ", "plugins.yaml:6: ", "plugins.yaml:7: "}},

		// What only the plugins see: their config blocks and files.
		{name: "static config unknown key", plugin: true, files: map[string]string{"plugins.yaml": staticAt("clusters.yaml") + "      pth: x\n", "clusters.yaml": good},
			want: []string{"plugins.yaml:11: ", "pth"}},
		{name: "static config without path", plugin: true, files: map[string]string{"plugins.yaml": listenAnywhere + "plugins:\n  - name: files\n    type: static\n    config: {}\n"},
			want: []string{"plugins.yaml:", "path"}},
		{name: "static file missing", plugin: true, files: map[string]string{"plugins.yaml": staticAt("missing.yaml")}, want: []string{"missing.yaml"}},
		{name: "static file bad YAML", plugin: true, files: map[string]string{"plugins.yaml": staticAt("clusters.yaml"), "clusters.yaml": "clusters:\n  - name: a\n    endpoints: [\n"},
			want: []string{"clusters.yaml:"}},
		{name: "static file unknown cluster field", plugin: true, files: map[string]string{"plugins.yaml": staticAt("clusters.yaml"), "clusters.yaml": "clusters:\n  - name: a\n    lb_polcy: ROUND_ROBIN\n"},
			want: []string{"clusters.yaml:3: ", "lb_polcy", "lb_policy"}},
		{name: "static file host name", plugin: true, files: map[string]string{"plugins.yaml": staticAt("clusters.yaml"), "clusters.yaml": "clusters:\n  - name: a\n    endpoints:\n      - {address: web-1.internal, port: 80}\n"},
			want: []string{"clusters.yaml:4: ", "web-1.internal"}},
		{name: "static file ports 0 and 70000", plugin: true, files: map[string]string{"plugins.yaml": staticAt("clusters.yaml"), "clusters.yaml": "clusters:\n  - name: a\n    endpoints:\n      - {address: 10.0.0.1, port: 0}\n      - {address: 10.0.0.2, port: 70000}\n"},
			want: []string{"clusters.yaml:4: ", "clusters.yaml:5: "}},
		{name: "static file duplicate clusters", plugin: true, files: map[string]string{"plugins.yaml": staticAt("clusters.yaml"), "clusters.yaml": "clusters:\n  - name: a\n  - name: a\n"},
			want: []string{"clusters.yaml:3: "}},
		{name: "static file duplicate endpoints", plugin: true, files: map[string]string{"plugins.yaml": staticAt("clusters.yaml"), "clusters.yaml": "clusters:\n  - name: a\n    endpoints:\n      - {address: \"::1\", port: 80}\n      - {address: \"0:0:0:0:0:0:0:1\", port: 80}\n"},
			want: []string{"clusters.yaml:5: "}},
		{name: "static file unknown health", plugin: true, files: map[string]string{"plugins.yaml": staticAt("clusters.yaml"), "clusters.yaml": "clusters:\n  - name: a\n    endpoints:\n      - {address: 10.0.0.1, port: 80, health: sick}\n"},
			want: []string{"clusters.yaml:4: ", "sick"}},
		{name: "static file wrong type", plugin: true, files: map[string]string{"plugins.yaml": staticAt("clusters.yaml"), "clusters.yaml": "clusters:\n  - name: a\n    endpoints: lots\n"},
			want: []string{"clusters.yaml:3: "}},
		{name: "static file empty", plugin: true, files: map[string]string{"plugins.yaml": staticAt("clusters.yaml"), "clusters.yaml": "# nothing yet\n"},
			want: []string{"clusters.yaml:"}},
		{name: "static file forbidden overlay field", plugin: true, files: map[string]string{"plugins.yaml": staticAt("clusters.yaml"), "clusters.yaml": "clusters:\n  - name: a\n    type: STATIC\n"},
			want: []string{"clusters.yaml:3: "}},
		{name: "static file unknown resource type", plugin: true, files: map[string]string{"plugins.yaml": staticAt("clusters.yaml"), "clusters.yaml": "resources:\n  - \"@type\": type.googleapis.com/no.such.Type\n    name: x\n"},
			want: []string{"clusters.yaml:2: "}},
		{name: "static file invalid listener", plugin: true, files: map[string]string{"plugins.yaml": staticAt("clusters.yaml"), "clusters.yaml": "resources:\n  - \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n    name: l\n    address: {socket_address: {address: 127.0.0.1, port_value: 99999}}\n"},
			want: []string{"clusters.yaml:"}},
		{name: "dns config problems", plugin: true, files: map[string]string{"plugins.yaml": listenAnywhere + "plugins:\n  - name: names\n    type: dns\n    config:\n      type: MX\n      servers: [\"ns1..internal\"]\n"},
			want: []string{"plugins.yaml:10: ", "plugins.yaml:11: "}},
		{name: "consul config problems", plugin: true, files: map[string]string{"plugins.yaml": listenAnywhere + "plugins:\n  - name: catalog\n    type: consul\n    config:\n      address: nonsense\n      scheme: ftp\n"},
			want: []string{"plugins.yaml:10: ", "plugins.yaml:11: "}},
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// fileLine matches a problem line: FILE:LINE: message.
var fileLine = regexp.MustCompile(`^\S+\.yaml:\d+: \S`)

type cmdResult struct {
	out     string
	code    int
	timeout bool
}

// runCmd runs the bridge with args in dir, bounded by within.
func runCmd(dir string, within time.Duration, args ...string) cmdResult {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, bridgeBin, args...)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	out, _ := cmd.CombinedOutput()
	return cmdResult{out: string(out), code: cmd.ProcessState.ExitCode(), timeout: ctx.Err() != nil}
}

// problemLines are the FILE:LINE lines of an output.
func problemLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if fileLine.MatchString(strings.TrimSpace(l)) {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return lines
}

// TestReliabilityBrokenConfig runs `validate` and `run` on every broken
// configuration. The commands of all cases run concurrently (a `run` that
// does not exit is waited for up to runWait); the checks then run case by
// case.
func TestReliabilityBrokenConfig(t *testing.T) {
	cases := brokenConfigs()
	const runWait = 6 * time.Second
	type result struct{ validate, run cmdResult }
	results := make([]result, len(cases))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 12)
	for i, tc := range cases {
		dir := t.TempDir()
		for name, content := range tc.files {
			path := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if tc.setup != nil {
			tc.setup(t, dir)
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i].validate = runCmd(dir, 60*time.Second, "validate", "--config", "plugins.yaml")
			results[i].run = runCmd(dir, runWait, "run", "--config", "plugins.yaml")
		})
	}
	wg.Wait()
	recordBadInputs(t, "broken configurations", len(cases))

	var runStayedUp []string
	for i, tc := range cases {
		r := results[i]
		t.Run(tc.name, func(t *testing.T) {
			v := r.validate
			if v.code != 1 {
				t.Fatalf("validate exited %d, want 1; output:\n%s", v.code, v.out)
			}
			lines := problemLines(v.out)
			if len(lines) == 0 {
				t.Fatalf("validate printed no FILE:LINE line:\n%s", v.out)
			}
			for _, w := range tc.want {
				found := false
				for _, l := range lines {
					found = found || strings.Contains(l, w)
				}
				if !found {
					t.Errorf("validate: no FILE:LINE line contains %q; output:\n%s", w, v.out)
				}
			}
			if tc.exact != "" && !strings.Contains(v.out, tc.exact) {
				t.Errorf("validate: %s is reported at the wrong line (want %q): %s", tc.name, tc.exact, relFirstLine(v.out))
			}
			if r.run.timeout {
				if !tc.plugin {
					t.Fatalf("run did not exit within %v on a configuration config.Load rejects", runWait)
				}
				runStayedUp = append(runStayedUp, tc.name)
				return
			}
			if r.run.code == 0 {
				t.Fatalf("run exited 0; output:\n%s", r.run.out)
			}
			for _, l := range lines {
				if !strings.Contains(r.run.out, l) {
					t.Errorf("run's output lacks validate's line %q; run printed:\n%s", l, r.run.out)
				}
			}
		})
	}
	t.Run("run exits on problems only plugins see", func(t *testing.T) {
		if len(runStayedUp) != 0 {
			t.Errorf("a problem only a plugin sees (its config block, its files) did not stop `run` with the FILE:LINE lines `validate` prints; cases: %s", strings.Join(runStayedUp, "; "))
		}
	})
}
