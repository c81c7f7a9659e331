package main

import (
	"errors"
	"net/url"
	"time"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// Config is the plugin's `config` block.
type Config struct {
	// URL is the endpoint polled, http or https. Required.
	URL string `yaml:"url"`
	// Interval is the wait between the end of one poll and the start of
	// the next. Default: 5s.
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one poll: connecting, sending the request and reading
	// the whole response. Default: 2s.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultConfig returns the configuration with every default applied.
func DefaultConfig() Config {
	return Config{
		Interval: 5 * time.Second,
		Timeout:  2 * time.Second,
	}
}

// Validate reports every problem in c as an sdk.ConfigErrors.
func (c Config) Validate() error {
	var errs sdk.ConfigErrors
	if c.URL == "" {
		errs.Add("url", "required")
	} else if u, err := url.Parse(c.URL); err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold a password
		}
		errs.Add("url", "not a URL: %v", err)
	} else if u.Scheme != "http" && u.Scheme != "https" {
		errs.Add("url", "scheme %q is not http or https", u.Scheme)
	} else if u.Host == "" {
		errs.Add("url", "%q has no host", u.Redacted())
	}
	if c.Interval <= 0 {
		errs.Add("interval", "must be positive, got %s", c.Interval)
	}
	if c.Timeout <= 0 {
		errs.Add("timeout", "must be positive, got %s", c.Timeout)
	}
	return errs.Err()
}
