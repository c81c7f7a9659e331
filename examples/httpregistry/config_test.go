package main

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/xdsbridge/xdsbridge/sdk"
)

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want Config
		errs []sdk.FieldError // nil: valid
	}{
		{
			name: "defaults",
			yaml: "url: http://registry.example:8080/services\n",
			want: Config{URL: "http://registry.example:8080/services", Interval: 5 * time.Second, Timeout: 2 * time.Second},
		},
		{
			name: "every field",
			yaml: "url: https://registry.example/v1\ninterval: 1m\ntimeout: 250ms\n",
			want: Config{URL: "https://registry.example/v1", Interval: time.Minute, Timeout: 250 * time.Millisecond},
		},
		{name: "empty block", yaml: "", errs: []sdk.FieldError{{Path: "url", Message: "required"}}},
		{name: "bad scheme", yaml: "url: ftp://x/\n", errs: []sdk.FieldError{{Path: "url", Message: `scheme "ftp" is not http or https`}}},
		{name: "no scheme", yaml: "url: registry.example\n", errs: []sdk.FieldError{{Path: "url", Message: `scheme "" is not http or https`}}},
		{name: "no host", yaml: "url: http:///x\n", errs: []sdk.FieldError{{Path: "url", Message: `"http:///x" has no host`}}},
		{name: "not a URL", yaml: "url: \"http://a b:secret@x/\\u007f\"\n", errs: []sdk.FieldError{{Path: "url", Message: "not a URL: net/url: invalid control character in URL"}}},
		{
			name: "zero and negative durations",
			yaml: "url: http://x/\ninterval: 0s\ntimeout: -1s\n",
			errs: []sdk.FieldError{{Path: "interval", Message: "must be positive, got 0s"}, {Path: "timeout", Message: "must be positive, got -1s"}},
		},
		{name: "not a duration", yaml: "url: http://x/\ninterval: often\n", errs: []sdk.FieldError{{Path: "interval", Message: "cannot unmarshal !!str `often` into time.Duration"}}},
		{name: "unknown key", yaml: "url: http://x/\nintervall: 1s\n", errs: []sdk.FieldError{{Path: "intervall", Message: `unknown key "intervall" (did you mean "interval"?)`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			err := sdk.DecodeConfig([]byte(tt.yaml), &cfg)
			if err == nil {
				err = cfg.Validate()
			}
			var got sdk.ConfigErrors
			if err != nil && !errors.As(err, &got) {
				t.Fatalf("error %v is not an sdk.ConfigErrors", err)
			}
			if !slices.Equal(got, sdk.ConfigErrors(tt.errs)) {
				t.Fatalf("errors:\n%v\nwant:\n%v", got, sdk.ConfigErrors(tt.errs))
			}
			if tt.errs == nil && cfg != tt.want {
				t.Fatalf("config %+v; want %+v", cfg, tt.want)
			}
		})
	}
}

func TestConfigure(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		errs []sdk.FieldError // nil: accepted
	}{
		{name: "valid", yaml: "url: http://registry.example/\n"},
		{
			name: "decode and validation problems together",
			yaml: "url: ftp://x/\nintervl: 1s\ntimeout: 0s\n",
			errs: []sdk.FieldError{
				{Path: "intervl", Message: `unknown key "intervl" (did you mean "interval"?)`},
				{Path: "url", Message: `scheme "ftp" is not http or https`},
				{Path: "timeout", Message: "must be positive, got 0s"},
			},
		},
		{
			name: "a field that did not decode is not validated",
			yaml: "url: [http://x/]\ninterval: soon\n",
			errs: []sdk.FieldError{
				{Path: "url", Message: "cannot unmarshal !!seq into string"},
				{Path: "interval", Message: "cannot unmarshal !!str `soon` into time.Duration"},
			},
		},
		{name: "broken block", yaml: "url: [\n", errs: []sdk.FieldError{{Message: "line 1: did not find expected node content"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := configure(t.Context(), sdk.ConfigureRequest{Config: []byte(tt.yaml), ValidateOnly: true})
			var got sdk.ConfigErrors
			if err != nil && !errors.As(err, &got) {
				t.Fatalf("error %v is not an sdk.ConfigErrors", err)
			}
			if !slices.Equal(got, sdk.ConfigErrors(tt.errs)) {
				t.Fatalf("errors:\n%#v\nwant:\n%#v", got, sdk.ConfigErrors(tt.errs))
			}
			if tt.errs == nil && src == nil {
				t.Fatal("no Source")
			}
		})
	}
}
