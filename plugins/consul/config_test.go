package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/xdsbridge/xdsbridge/internal/security/secret"
	"github.com/xdsbridge/xdsbridge/sdk"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want []string // "path: message substring"; none means valid
	}{
		{name: "defaults", edit: func(*Config) {}},
		{name: "full", edit: func(c *Config) {
			c.Scheme = "https"
			c.TLS = TLSConfig{CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", ServerName: "consul"}
			c.Datacenters = []string{"dc1", "dc2"}
			c.Services = []string{"web"}
			c.Tags = []string{"prod"}
			c.NodeMeta = map[string]string{"rack": "r1"}
			c.Health = HealthAny
			c.ClusterName = "{{.Partition}}-{{.Service}}"
			c.Overlays = map[string]map[string]any{"web": {"connect_timeout": "1s"}}
		}},
		{name: "bad address", edit: func(c *Config) { c.Address = "consul" },
			want: []string{`address: "consul" is not host:port`}},
		{name: "bad port", edit: func(c *Config) { c.Address = "127.0.0.1:0" },
			want: []string{"address: port"}},
		{name: "bad scheme", edit: func(c *Config) { c.Scheme = "ftp" },
			want: []string{`scheme: unknown scheme "ftp"`}},
		{name: "tls with http", edit: func(c *Config) { c.TLS.CAFile = "ca.pem" },
			want: []string{"tls: set, but scheme is http"}},
		{name: "cert without key", edit: func(c *Config) { c.Scheme = "https"; c.TLS.CertFile = "c.pem" },
			want: []string{"tls: cert_file and key_file go together"}},
		{name: "token and token file", edit: func(c *Config) { c.Token = secret.New("x"); c.TokenFile = "f" },
			want: []string{"token_file: set together with token"}},
		{name: "duplicate datacenter", edit: func(c *Config) { c.Datacenters = []string{"dc1", "dc1", ""} },
			want: []string{`datacenters[1]: "dc1" is already datacenters[0]`, "datacenters[2]: empty"}},
		{name: "duplicate service", edit: func(c *Config) { c.Services = []string{"a", "a"} },
			want: []string{`services[1]: "a" is already services[0]`}},
		{name: "empty tag", edit: func(c *Config) { c.Tags = []string{""} },
			want: []string{"tags[0]: empty tag"}},
		{name: "bad health", edit: func(c *Config) { c.Health = "critical" },
			want: []string{`health: unknown health "critical"`}},
		{name: "template syntax", edit: func(c *Config) { c.ClusterName = "{{.Service" },
			want: []string{"cluster_name: "}},
		{name: "template unknown field", edit: func(c *Config) { c.ClusterName = "{{.Datacenter}}" },
			want: []string{"cluster_name: "}},
		{name: "template constant", edit: func(c *Config) { c.ClusterName = "web" },
			want: []string{"cluster_name: \"web\" gives every service the same cluster name"}},
		{name: "template empty", edit: func(c *Config) { c.ClusterName = "{{if false}}x{{end}}" },
			want: []string{"cluster_name: "}},
		{name: "bad overlay", edit: func(c *Config) {
			c.Overlays = map[string]map[string]any{"web": {"conect_timeout": "1s"}}
		}, want: []string{"overlays.web: "}},
		{name: "overlay forbidden field", edit: func(c *Config) {
			c.Overlays = map[string]map[string]any{"web": {"name": "x"}}
		}, want: []string{"overlays.web: "}},
		{name: "overlay outside allow list", edit: func(c *Config) {
			c.Services = []string{"api"}
			c.Overlays = map[string]map[string]any{"web": {"connect_timeout": "1s"}}
		}, want: []string{`overlays.web: service "web" is not in services`}},
		{name: "too few connections", edit: func(c *Config) { c.Datacenters = []string{"a", "b"}; c.MaxConnections = 4 },
			want: []string{"max_connections: 4 is too few"}},
		{name: "too few connections with a token", edit: func(c *Config) { c.TokenFile = "f"; c.MaxConnections = 4 },
			want: []string{"max_connections: 4 is too few: at least 3 per datacenter plus 1, and 1 more with a token (5)"}},
		{name: "wait", edit: func(c *Config) { c.Wait = time.Hour },
			want: []string{"wait: 1h0m0s is out of range"}},
		{name: "coalesce", edit: func(c *Config) { c.Coalesce = -1 },
			want: []string{"coalesce: "}},
		{name: "retry", edit: func(c *Config) { c.Retry = RetryConfig{Initial: 0, Max: -1} },
			want: []string{"retry.initial: must be positive", "retry.max: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.edit(&cfg)
			err := cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var ce sdk.ConfigErrors
			if !errors.As(err, &ce) {
				t.Fatalf("Validate() = %v, want sdk.ConfigErrors", err)
			}
			if len(ce) != len(tt.want) {
				t.Errorf("got %d errors, want %d: %v", len(ce), len(tt.want), err)
			}
			for _, w := range tt.want {
				path, msg, _ := strings.Cut(w, ": ")
				found := false
				for _, e := range ce {
					found = found || (e.Path == path && strings.Contains(e.Message, msg))
				}
				if !found {
					t.Errorf("no error %q in %v", w, err)
				}
			}
		})
	}
}

func TestConfigure(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("  s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		yaml     string
		wantErr  string // "path: substring"
		validate bool
	}{
		{name: "empty block: defaults", yaml: ""},
		{name: "full", yaml: `
address: 192.0.2.1:8500
token_file: token
datacenters: [dc1, dc2]
services: [web]
tags: [prod]
node_meta: {rack: r1}
filter: 'Service.Meta.version == "2"'
health: warning
cluster_name: "{{.Service}}.consul"
locality: {zone_key: zone, sub_zone_key: rack}
overlays:
  web: {connect_timeout: 1s, lb_policy: LEAST_REQUEST}
max_connections: 16
wait: 1m
coalesce: 10ms
retry: {initial: 100ms, max: 5s}
`},
		// Validation reaches no server: an unroutable address is fine.
		{name: "validate only", yaml: "address: 192.0.2.1:1\n", validate: true},
		{name: "unknown key", yaml: "adress: x:1\n", wantErr: `adress: unknown key "adress" (did you mean "address"?)`},
		{name: "wrong type", yaml: "max_connections: many\n", wantErr: "max_connections: "},
		{name: "invalid value", yaml: "health: sometimes\n", wantErr: "health: unknown health"},
		{name: "missing token file", yaml: "token_file: nope\n", wantErr: "token_file: read token"},
		{name: "missing ca file", yaml: "scheme: https\ntls: {ca_file: nope.pem}\n", wantErr: "tls.ca_file: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := Plugin("test").Configure(context.Background(), sdk.ConfigureRequest{
				Instance: "consul", Config: []byte(tt.yaml), BaseDir: dir, ValidateOnly: tt.validate,
			})
			if tt.wantErr == "" {
				if err != nil || src == nil {
					t.Fatalf("Configure() = %v, %v; want a source", src, err)
				}
				return
			}
			var ce sdk.ConfigErrors
			if !errors.As(err, &ce) {
				t.Fatalf("Configure() error = %v, want sdk.ConfigErrors", err)
			}
			path, msg, _ := strings.Cut(tt.wantErr, ": ")
			for _, e := range ce {
				if e.Path == path && strings.Contains(e.Message, msg) {
					return
				}
			}
			t.Errorf("Configure() error = %v, want %q", err, tt.wantErr)
		})
	}
}

func TestTokenFileResolvesAgainstBaseDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tok"), []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.TokenFile = "tok"
	s, err := New(cfg, Options{BaseDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.client.token.get(); got != "abc" {
		t.Errorf("token = %q, want abc", got)
	}
}

// The token decodes from a plain string in the config block, reaches
// requests, and shows as "[redacted]" when the config is printed or
// logged.
func TestTokenIsSecret(t *testing.T) {
	const tok = "3f0a2c1e-0000-4000-8000-5ec2e7000000"
	cfg := DefaultConfig()
	if err := sdk.DecodeConfig([]byte("token: "+tok+"\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Token.Reveal(); got != tok {
		t.Fatalf("token = %q, want %q", got, tok)
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "config", cfg, "token", cfg.Token)
	for _, shown := range []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), logged.String()} {
		if strings.Contains(shown, tok) {
			t.Errorf("the token is shown: %s", shown)
		}
	}
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.client.token.get(); got != tok {
		t.Errorf("token sent = %q, want %q", got, tok)
	}
}

func TestClusterNameTemplate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ClusterName = "{{.Service}}.{{.Namespace}}"
	cfg.Namespace = "team-a"
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.clusterName("web"); got != "web.team-a" {
		t.Errorf("clusterName(web) = %q, want web.team-a", got)
	}
}

// TestREADMEExamples decodes and validates every plugin entry of the README.
func TestREADMEExamples(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(readme), "```yaml\n")[1:]
	if len(blocks) < 4 {
		t.Fatalf("found %d yaml blocks in README.md, want at least 4", len(blocks))
	}
	entries := 0
	for i, b := range blocks {
		b, _, _ = strings.Cut(b, "```")
		var list []struct {
			Name   string    `yaml:"name"`
			Type   string    `yaml:"type"`
			Config yaml.Node `yaml:"config"`
		}
		if err := yaml.Unmarshal([]byte(b), &list); err != nil {
			continue // not a list of plugin entries (the metadata layout)
		}
		for _, e := range list {
			entries++
			if e.Type != "consul" {
				t.Errorf("block %d: %s has type %q", i, e.Name, e.Type)
			}
			raw, err := yaml.Marshal(&e.Config)
			if err != nil {
				t.Fatal(err)
			}
			if e.Config.Kind == 0 {
				raw = nil
			}
			cfg := DefaultConfig()
			if err := sdk.DecodeConfig(raw, &cfg); err != nil {
				t.Errorf("block %d: %s: %v", i, e.Name, err)
				continue
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("block %d: %s: %v", i, e.Name, err)
			}
		}
	}
	if entries < 4 {
		t.Errorf("checked %d plugin entries, want at least 4", entries)
	}
}
