package secret_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"

	"github.com/xdsbridge/xdsbridge/internal/security/secret"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const value = "s3cr3t-Consul-token-6f1d"

// config is shaped like a real one: secrets as exported fields, in nested
// structs, pointers, slices and maps, and one in an unexported field,
// which fmt prints without calling its methods.
type config struct {
	Name    string                   `json:"name" yaml:"name"`
	Token   secret.String            `json:"token" yaml:"token"`
	Consul  *consul                  `json:"consul" yaml:"consul"`
	Keys    []secret.String          `json:"keys" yaml:"keys"`
	ByName  map[string]secret.String `json:"by_name" yaml:"by_name"`
	private secret.String
}

type consul struct {
	Address string        `json:"address" yaml:"address"`
	ACL     secret.String `json:"acl" yaml:"acl"`
}

func newConfig() config {
	s := secret.New(value)
	return config{
		Name:    "edge",
		Token:   s,
		Consul:  &consul{Address: "127.0.0.1:8500", ACL: s},
		Keys:    []secret.String{s, s},
		ByName:  map[string]secret.String{"admin": s},
		private: s,
	}
}

// TestNeverPrinted prints a config holding secrets every way a value
// reaches a log, a debug page or an error message.
func TestNeverPrinted(t *testing.T) {
	cfg := newConfig()
	cases := map[string]func() (string, error){
		"slog json": func() (string, error) {
			var buf bytes.Buffer
			l := slog.New(slog.NewJSONHandler(&buf, nil))
			l.Info("loaded", "config", cfg, "token", cfg.Token, slog.Any("ptr", &cfg))
			return buf.String(), nil
		},
		"slog text": func() (string, error) {
			var buf bytes.Buffer
			l := slog.New(slog.NewTextHandler(&buf, nil))
			l.Info("loaded", "config", cfg, "token", cfg.Token, slog.Group("g", "acl", cfg.Consul.ACL))
			return buf.String(), nil
		},
		"fmt verbs": func() (string, error) {
			var b strings.Builder
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%T"} {
				fmt.Fprintf(&b, verb+"\n", cfg)
				fmt.Fprintf(&b, verb+"\n", &cfg)
				fmt.Fprintf(&b, verb+"\n", cfg.Token)
				fmt.Fprintf(&b, verb+"\n", cfg.Consul)
			}
			fmt.Fprint(&b, cfg, cfg.Token, cfg.Keys, cfg.ByName)
			fmt.Fprintln(&b, cfg, cfg.Token)
			return b.String(), nil
		},
		"error message": func() (string, error) {
			err := fmt.Errorf("consul: connect with %v as %s: %w", cfg.Consul, cfg.Token, errors.New("403"))
			return err.Error(), nil
		},
		"json": func() (string, error) {
			b, err := json.Marshal(cfg)
			return string(b), err
		},
		"json indent": func() (string, error) {
			b, err := json.MarshalIndent(map[string]any{"config": &cfg}, "", "  ")
			return string(b), err
		},
		"yaml": func() (string, error) {
			b, err := yaml.Marshal(cfg)
			return string(b), err
		},
		"text": func() (string, error) {
			b, err := cfg.Token.MarshalText()
			return string(b), err
		},
	}
	for name, print := range cases {
		t.Run(name, func(t *testing.T) {
			out, err := print()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out, value) || strings.Contains(out, fmt.Sprintf("%x", value)) {
				t.Fatalf("the secret leaked:\n%s", out)
			}
			if !strings.Contains(out, secret.Redacted) {
				t.Fatalf("want %q in the output:\n%s", secret.Redacted, out)
			}
		})
	}
}

// TestLeakDetectorWorks shows that the check above fails on a plain
// string, so that TestNeverPrinted can fail.
func TestLeakDetectorWorks(t *testing.T) {
	type plain struct{ Token string }
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("loaded", "config", plain{value})
	if !strings.Contains(buf.String(), value) {
		t.Fatalf("a plain string should show up in the log: %s", buf.String())
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name   string
		decode func([]byte, any) error
		in     string
		want   string
	}{
		{"yaml", yaml.Unmarshal, "name: edge\ntoken: " + value + "\nconsul: {acl: \"" + value + "\"}\n", value},
		{"yaml number", yaml.Unmarshal, "token: 12345\nconsul: {acl: 12345}\n", "12345"},
		{"yaml null", yaml.Unmarshal, "token: null\nconsul: {acl: ~}\n", ""},
		{"json", json.Unmarshal, `{"token":"` + value + `","consul":{"acl":"` + value + `"}}`, value},
		{"json empty", json.Unmarshal, `{"token":"","consul":{"acl":""}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg config
			if err := tt.decode([]byte(tt.in), &cfg); err != nil {
				t.Fatal(err)
			}
			if got := cfg.Token.Reveal(); got != tt.want {
				t.Errorf("token = %q, want %q", got, tt.want)
			}
			if got := cfg.Consul.ACL.Reveal(); got != tt.want {
				t.Errorf("consul.acl = %q, want %q", got, tt.want)
			}
			if cfg.Token.IsZero() != (tt.want == "") {
				t.Errorf("IsZero = %v for %q", cfg.Token.IsZero(), tt.want)
			}
		})
	}
}

func TestUnsetPrintsEmpty(t *testing.T) {
	var s secret.String
	b, err := json.Marshal(struct{ T secret.String }{s})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%v|%s|%q|%s", s, s, s, b); got != `||""|{"T":""}` {
		t.Errorf("unset secret printed as %s", got)
	}
	if !secret.New("").IsZero() {
		t.Error(`New("") should be unset`)
	}
}

func TestEqual(t *testing.T) {
	tests := []struct {
		a, b secret.String
		want bool
	}{
		{secret.New("a"), secret.New("a"), true},
		{secret.New("a"), secret.New("b"), false},
		{secret.New("a"), secret.New("ab"), false},
		{secret.String{}, secret.New(""), true},
		{secret.String{}, secret.New("a"), false},
	}
	for _, tt := range tests {
		if got := tt.a.Equal(tt.b); got != tt.want {
			t.Errorf("%q.Equal(%q) = %v, want %v", tt.a.Reveal(), tt.b.Reveal(), got, tt.want)
		}
	}
	// go-cmp finds Equal, so configs holding secrets compare by value.
	if d := cmp.Diff(newConfig().Consul, &consul{Address: "127.0.0.1:8500", ACL: secret.New(value)}); d != "" {
		t.Errorf("cmp.Diff: %s", d)
	}
}
