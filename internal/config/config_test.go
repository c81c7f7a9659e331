package config

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/xdsbridge/xdsbridge/sdk"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with the golden file, or rewrites it with -update.
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

// TestBroken loads every file in testdata/broken and compares the exact
// error lines with the file's .golden twin.
func TestBroken(t *testing.T) {
	files, err := filepath.Glob("testdata/broken/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 25 {
		t.Fatalf("want at least 25 broken configurations, found %d", len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			cfg, err := Load(file)
			if err == nil {
				t.Fatalf("Load(%s) = %+v, want errors", file, cfg)
			}
			if cfg != nil {
				t.Errorf("Load returned a Config with errors")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want Errors: %v", err, err)
			}
			for i, e := range errs {
				if e.File != file || e.Line < 1 || e.Msg == "" {
					t.Errorf("malformed error %#v", e)
				}
				if i > 0 && errs[i-1].Line > e.Line {
					t.Errorf("errors not sorted by line: %d before %d", errs[i-1].Line, e.Line)
				}
			}
			golden(t, strings.TrimSuffix(file, ".yaml")+".golden", err.Error()+"\n")
		})
	}
}

// view is a Config as the golden files show it.
type view struct {
	File, Dir    string
	GRPCAddress  string
	RESTAddress  string
	Keepalive    keepaliveView
	RateLimit    rateLimitView
	Clients      clientsView
	TLS          *TLS `json:",omitempty"`
	AdminAddress string
	// Shown only when set, so that the other golden files stay as they are.
	AdminTokenFile string         `json:",omitempty"`
	AdminPProf     bool           `json:",omitempty"`
	GRPCListeners  *GRPCListeners `json:",omitempty"`
	Debounce       string
	ReadyTimeout   string
	Plugins        []pluginView
}

type keepaliveView struct {
	Time, Timeout, MinPingInterval string
	PermitWithoutStream            bool
}

type rateLimitView struct {
	PerConnection, Total string
}

type clientsView struct {
	DisconnectHistory int
	RESTIdleTimeout   string
}

func bucketString(b Bucket) string {
	if b.Rate == 0 {
		return "unlimited"
	}
	return fmt.Sprintf("%g/s burst %d", b.Rate, b.Burst)
}

type pluginView struct {
	Name, Type     string
	Command        []string
	SHA256         string
	InitialBackoff string
	MaxBackoff     string
	RestartOnStale bool `json:",omitempty"`
	Config         *string
	Line           int
}

func render(c *Config) string {
	v := view{
		File: c.File, Dir: c.Dir,
		GRPCAddress: c.XDS.GRPCAddress, RESTAddress: c.XDS.RESTAddress,
		Keepalive: keepaliveView{
			Time: c.XDS.Keepalive.Time.String(), Timeout: c.XDS.Keepalive.Timeout.String(),
			MinPingInterval: c.XDS.Keepalive.MinPingInterval.String(), PermitWithoutStream: c.XDS.Keepalive.PermitWithoutStream,
		},
		RateLimit:    rateLimitView{PerConnection: bucketString(c.XDS.RateLimit.PerConnection), Total: bucketString(c.XDS.RateLimit.Total)},
		Clients:      clientsView{DisconnectHistory: c.XDS.Clients.DisconnectHistory, RESTIdleTimeout: c.XDS.Clients.RESTIdleTimeout.String()},
		TLS:          c.XDS.TLS,
		AdminAddress: c.Admin.Address, AdminTokenFile: c.Admin.TokenFile, AdminPProf: c.Admin.PProf,
		Debounce: c.Aggregator.Debounce.String(), ReadyTimeout: c.Aggregator.ReadyTimeout.String(),
	}
	if c.XDS.GRPCListeners != Default().XDS.GRPCListeners {
		v.GRPCListeners = &c.XDS.GRPCListeners
	}
	for _, p := range c.Plugins {
		if len(p.Command) > 0 {
			// Command[0] is absolute: show it relative to the package.
			wd, _ := os.Getwd()
			if rel, err := filepath.Rel(wd, p.Command[0]); err == nil {
				p.Command = append([]string{rel}, p.Command[1:]...)
			}
		}
		pv := pluginView{
			Name: p.Name, Type: p.Type, Command: p.Command, SHA256: p.SHA256,
			InitialBackoff: p.Restart.InitialBackoff.String(), MaxBackoff: p.Restart.MaxBackoff.String(),
			RestartOnStale: p.RestartOnStale, Line: p.Line,
		}
		if p.Config != nil {
			s := string(p.Config)
			pv.Config = &s
		}
		v.Plugins = append(v.Plugins, pv)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err)
	}
	return string(b) + "\n"
}

// TestValid loads every file in testdata/valid and compares the result
// with the file's .golden twin.
func TestValid(t *testing.T) {
	files, err := filepath.Glob("testdata/valid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no valid configurations found")
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			cfg, err := Load(file)
			if err != nil {
				t.Fatalf("Load(%s): %v", file, err)
			}
			for _, p := range cfg.Plugins {
				if len(p.Command) > 0 && !filepath.IsAbs(p.Command[0]) {
					t.Errorf("plugin %s: Command[0] = %q, want an absolute path", p.Name, p.Command[0])
				}
			}
			golden(t, strings.TrimSuffix(file, ".yaml")+".golden", render(cfg))
		})
	}
}

func TestDefaults(t *testing.T) {
	for _, data := range []string{"", "# nothing\n", "---\n", "xds:\nadmin:\naggregator:\nplugins:\n"} {
		cfg, err := Parse("p.yaml", []byte(data))
		if err != nil {
			t.Fatalf("Parse(%q): %v", data, err)
		}
		want := Default()
		want.File, want.Dir = "p.yaml", "."
		if diff := cmp.Diff(want, cfg, cmpopts.IgnoreUnexported(Plugin{})); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", data, diff)
		}
	}
	r := DefaultRestart()
	if r.InitialBackoff != 100*time.Millisecond || r.MaxBackoff != 30*time.Second {
		t.Errorf("DefaultRestart() = %+v", r)
	}
	cfg, err := Parse("p.yaml", []byte("plugins: [{name: a, type: static}]"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Plugins[0].Restart; got != r {
		t.Errorf("restart of a plugin without a restart block = %+v, want %+v", got, r)
	}
	if cfg.Plugins[0].Config != nil {
		t.Errorf("Config = %q, want nil without a config block", cfg.Plugins[0].Config)
	}
}

func TestLoadUnreadable(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
	var errs Errors
	if errors.As(err, &errs) {
		t.Errorf("an unreadable file is not an invalid one, got Errors")
	}
}

func TestCommandLookup(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "my-plugin")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	tests := []struct {
		name    string
		command string
		want    []string
	}{
		{"bare name through PATH", "[my-plugin, -v]", []string{bin, "-v"}},
		{"relative to the file", "[./my-plugin]", []string{bin}},
		{"relative with dot-dot", "[../" + filepath.Base(dir) + "/my-plugin]", []string{bin}},
		{"absolute", "[" + bin + "]", []string{bin}},
		{"string form", `"./my-plugin -a  -b"`, []string{bin, "-a", "-b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := "plugins:\n  - name: a\n    command: " + tt.command + "\n"
			cfg, err := Parse(filepath.Join(dir, "plugins.yaml"), []byte(data))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, cfg.Plugins[0].Command); diff != "" {
				t.Errorf("Command (-want +got):\n%s", diff)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	errs := Errors{{File: "a.yaml", Line: 3, Msg: "one"}, {File: "a.yaml", Line: 7, Msg: "two"}}
	if got, want := errs.Error(), "a.yaml:3: one\na.yaml:7: two"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestLocate(t *testing.T) {
	const data = `plugins:
  - name: a
    type: static
    config:
      tls:
        ca_file: ca.pem
      names:
        - name: web
        - &second
          name: api
          tags: [x, y]
      copy:
        <<: *second
        extra: 1
  - name: b
    type: static
`
	cfg, err := Parse("p.yaml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	a, b := &cfg.Plugins[0], &cfg.Plugins[1]
	tests := []struct {
		p    *Plugin
		path string
		want int
	}{
		{a, "", 4},
		{a, "tls", 5},
		{a, "tls.ca_file", 6},
		{a, "names", 7},
		{a, "names[0]", 8},
		{a, "names[0].name", 8},
		{a, "names[1].name", 10},
		{a, "names[1].tags[1]", 11},
		{a, "copy.extra", 14},
		{a, "copy.name", 10}, // through the merge key
		{a, "tls.cert_file", 5},
		{a, "names[7].name", 7},
		{a, "tls[0]", 5},
		{a, "unknown", 4},
		{a, "names[x", 7},
		{b, "path", 15},
	}
	for _, tt := range tests {
		if got := tt.p.Locate(tt.path); got != tt.want {
			t.Errorf("%s.Locate(%q) = %d, want %d", tt.p.Name, tt.path, got, tt.want)
		}
	}
}

// TestConfigBlockForPlugins checks the contract with plugins: the config
// block decodes with sdk.DecodeConfig, and the paths of its errors locate
// back to lines of plugins.yaml.
func TestConfigBlockForPlugins(t *testing.T) {
	const data = `plugins:
  - name: a
    type: dns
    config: &c
      names: [a.example]
      interval: 30s
      port: http
      tls: {ca_fil: x}
  - name: b
    type: dns
    config:
      <<: *c
      interval: 5s
  - name: c
    type: dns
    config: {names: [x], port: http, interval: 1s}
`
	cfg, err := Parse("p.yaml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	type pluginConfig struct {
		Names    []string `yaml:"names"`
		Interval string   `yaml:"interval"`
		Port     int      `yaml:"port"`
		TLS      struct {
			CAFile string `yaml:"ca_file"`
		} `yaml:"tls"`
	}
	var pc pluginConfig
	err = sdk.DecodeConfig(cfg.Plugins[0].Config, &pc)
	var ces sdk.ConfigErrors
	if !errors.As(err, &ces) {
		t.Fatalf("DecodeConfig: %v, want ConfigErrors", err)
	}
	var got []string
	for _, e := range ces {
		got = append(got, e.Path+"@"+strconv.Itoa(cfg.Plugins[0].Locate(e.Path)))
	}
	want := []string{"tls.ca_fil@8", "port@7"}
	if diff := cmp.Diff(want, got, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("located errors (-want +got):\n%s", diff)
	}

	var merged pluginConfig
	err = sdk.DecodeConfig(cfg.Plugins[1].Config, &merged)
	if !errors.As(err, &ces) {
		t.Fatalf("DecodeConfig(merged): %v", err)
	}
	if merged.Interval != "5s" || len(merged.Names) != 1 || merged.Names[0] != "a.example" {
		t.Errorf("merged block decoded to %+v", merged)
	}

	// A flow-style block is re-encoded in block style, so that a type
	// error's line names its key.
	err = sdk.DecodeConfig(cfg.Plugins[2].Config, &pluginConfig{})
	if !errors.As(err, &ces) || len(ces) != 1 || ces[0].Path != "port" {
		t.Fatalf("DecodeConfig(flow style) = %v, want one error at port", err)
	}
	if got := cfg.Plugins[2].Locate(ces[0].Path); got != 16 {
		t.Errorf("Locate(%q) = %d, want 16", ces[0].Path, got)
	}
}

// TestShippedCommentedDefaults uncomments the xds keys the shipped
// plugins.yaml documents and checks they parse to the defaults, so that the
// file and Default() cannot drift apart.
func TestShippedCommentedDefaults(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "plugins.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	inXDS, uncommented := false, 0
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "xds:"):
			inXDS = true
		case line != "" && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "#"):
			inXDS = false
		case inXDS && strings.HasPrefix(line, "  # "):
			line = "  " + strings.TrimPrefix(line, "  # ")
			uncommented++
		}
		out = append(out, line)
	}
	if uncommented < 10 {
		t.Fatalf("found %d commented xds keys in plugins.yaml, want the keepalive, rate_limit and clients blocks", uncommented)
	}
	cfg, err := Parse("plugins.yaml", []byte(strings.Join(out, "\n")))
	if err != nil {
		t.Fatalf("plugins.yaml with its xds keys uncommented: %v", err)
	}
	want := Default().XDS
	if diff := cmp.Diff(want, cfg.XDS); diff != "" {
		t.Errorf("documented xds keys differ from the defaults (-want +got):\n%s", diff)
	}
}
