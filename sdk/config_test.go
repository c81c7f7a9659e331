package sdk

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type tlsConfig struct {
	CAFile string `yaml:"ca_file"`
}

type testConfig struct {
	Address  string            `yaml:"address"`
	Timeout  time.Duration     `yaml:"timeout"`
	Port     int               `yaml:"port"`
	TLS      tlsConfig         `yaml:"tls"`
	Names    []testName        `yaml:"names"`
	NodeMeta map[string]string `yaml:"node_meta"`
}

type testName struct {
	Name string `yaml:"name"`
}

func TestDecodeConfig(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want testConfig
		errs ConfigErrors
	}{
		{name: "empty keeps defaults", in: "", want: testConfig{Address: "default", Port: 1}},
		{name: "null keeps defaults", in: "~\n", want: testConfig{Address: "default", Port: 1}},
		{
			name: "values",
			in:   "address: a\ntimeout: 2s\ntls: {ca_file: ca.pem}\nnames: [{name: x}]\nnode_meta: {rack: r1}\n",
			want: testConfig{Address: "a", Port: 1, Timeout: 2 * time.Second, TLS: tlsConfig{CAFile: "ca.pem"}, Names: []testName{{"x"}}, NodeMeta: map[string]string{"rack": "r1"}},
		},
		{
			name: "unknown keys everywhere, with suggestions",
			in:   "adress: a\ntls:\n  ca_fil: x\nnames:\n  - name: a\n  - nme: b\n",
			errs: ConfigErrors{
				{Path: "adress", Message: `unknown key "adress" (did you mean "address"?)`},
				{Path: "tls.ca_fil", Message: `unknown key "ca_fil" (did you mean "ca_file"?)`},
				{Path: "names[1].nme", Message: `unknown key "nme" (did you mean "name"?)`},
			},
		},
		{
			name: "wrong types name their path",
			in:   "address: a\nport: lots\ntimeout: soon\n",
			errs: ConfigErrors{
				{Path: "port", Message: "cannot unmarshal !!str `lots` into int"},
				{Path: "timeout", Message: "cannot unmarshal !!str `soon` into time.Duration"},
			},
		},
		{name: "syntax error", in: "address: [\n", errs: ConfigErrors{{Message: "line 1: did not find expected node content"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := testConfig{Address: "default", Port: 1}
			err := DecodeConfig([]byte(tc.in), &got)
			var errs ConfigErrors
			if err != nil {
				errs = err.(ConfigErrors)
			}
			if diff := cmp.Diff(tc.errs, errs); diff != "" {
				t.Fatalf("errors (-want +got):\n%s", diff)
			}
			if tc.errs == nil {
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Fatalf("config (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestFieldErrorFormat(t *testing.T) {
	cases := []struct {
		e    FieldError
		want string
	}{
		{FieldError{Path: "tls.ca_file", Message: "no such file"}, "tls.ca_file: no such file"},
		{FieldError{Message: "bad"}, "bad"},
		{FieldError{Path: "path", File: "c.yaml", Line: 4, Message: "port out of range"}, "c.yaml:4: port out of range"},
		{FieldError{File: "c.yaml", Message: "unreadable"}, "c.yaml: unreadable"},
	}
	for _, tc := range cases {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.e, got, tc.want)
		}
	}
}

func TestParseHealth(t *testing.T) {
	for h := HealthUnknown; h <= Degraded; h++ {
		got, err := ParseHealth(h.String())
		if err != nil || got != h {
			t.Errorf("ParseHealth(%q) = %v, %v", h.String(), got, err)
		}
	}
	if _, err := ParseHealth("sick"); err == nil {
		t.Error("ParseHealth(sick) succeeded")
	}
}
