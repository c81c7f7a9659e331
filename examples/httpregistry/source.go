package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// maxBodyBytes bounds a registry response.
const maxBodyBytes = 16 << 20

// Options carries what a Source needs besides its Config.
type Options struct {
	// Logger receives the source's logs. Default: discard.
	Logger *slog.Logger
	// Client makes the requests. Default: a client of the Source's own,
	// whose idle connections Run closes when it returns.
	Client *http.Client
}

// Source polls the registry and serves each service as a cluster. Build
// one with New.
type Source struct {
	url      string // as configured
	redacted string // for logs and status reasons: no password
	interval time.Duration
	timeout  time.Duration
	client   *http.Client
	log      *slog.Logger
}

// New builds a Source from a valid cfg. It reaches no server until Run.
func New(cfg Config, opts Options) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("httpregistry: %w", err)
	}
	u, _ := url.Parse(cfg.URL) // checked by Validate
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	return &Source{
		url:      cfg.URL,
		redacted: u.Redacted(),
		interval: cfg.Interval,
		timeout:  cfg.Timeout,
		client:   opts.Client,
		log:      opts.Logger,
	}, nil
}

// Run polls the registry until ctx ends, then returns nil. It sends the
// full state after the first good response, then a change set with only the
// services that changed (upserted or removed) after each response that
// changes something, and nothing when nothing changed; an unchanged body is
// skipped with If-None-Match when the registry sends an ETag. When a poll
// fails (no answer, a status other than 200 or 304, or a body that is not
// the expected JSON) Run sends a Disconnected status saying why and no data,
// so the host keeps serving the last state; it sends Connected once a poll
// succeeds again. Each Run starts afresh with a full state, and Run never
// closes up.
func (s *Source) Run(ctx context.Context, up chan<- sdk.Update) error {
	defer s.client.CloseIdleConnections()
	p := &poller{fetch: s.fetch, log: s.log}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		u, ok := p.poll(ctx)
		if ctx.Err() != nil {
			return nil // the poll failed because we are stopping: say nothing
		}
		if ok {
			select {
			case <-ctx.Done():
				return nil
			case up <- u:
			}
		}
		timer.Reset(s.interval)
	}
}

// response is what one poll learned.
type response struct {
	// notModified: the registry answered 304 to If-None-Match.
	notModified bool
	clusters    map[string]sdk.Cluster
	problems    []string // items decode left out
	etag        string
}

// poller is the state of one Run: what it has sent and what it has said.
type poller struct {
	fetch func(ctx context.Context, etag string) (response, error)
	log   *slog.Logger

	changes  sdk.Changes // what the host has
	etag     string      // of the body sent last
	state    sdk.State
	reason   string
	problems []string // logged last, so that each is logged once
}

// poll fetches once and returns the update to send, if any.
func (p *poller) poll(ctx context.Context) (sdk.Update, bool) {
	resp, err := p.fetch(ctx, p.etag)
	if err != nil {
		if ctx.Err() != nil {
			return sdk.Update{}, false
		}
		reason := err.Error()
		if p.state == sdk.Disconnected && p.reason == reason {
			return sdk.Update{}, false
		}
		p.log.Warn("registry poll failed", "err", reason)
		p.state, p.reason = sdk.Disconnected, reason
		return sdk.Update{Status: &sdk.Status{State: sdk.Disconnected, Reason: reason}}, true
	}

	var u sdk.Update
	if !resp.notModified {
		if !slices.Equal(resp.problems, p.problems) {
			for _, msg := range resp.problems {
				p.log.Warn("registry item left out", "problem", msg)
			}
			p.problems = resp.problems
		}
		u, _ = p.changes.Update(sorted(resp.clusters))
		p.changes.Sent(u)
		p.etag = resp.etag
	}
	if p.state != sdk.Connected {
		if p.state == sdk.Disconnected {
			p.log.Info("registry reachable again")
		}
		p.state, p.reason = sdk.Connected, ""
		u.Status = &sdk.Status{State: sdk.Connected}
	}
	ok := u.Full || len(u.Clusters) > 0 || len(u.RemovedClusters) > 0 || u.Status != nil
	return u, ok
}

// fetch makes one request, with If-None-Match when etag is set.
func (s *Source) fetch(ctx context.Context, etag string) (response, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return response{}, fmt.Errorf("build request for %s: %w", s.redacted, err)
	}
	req.Header.Set("Accept", "application/json")
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return response{}, err // names the method and the redacted URL
	}
	defer resp.Body.Close()

	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		if etag == "" {
			return response{}, fmt.Errorf("GET %s: 304 Not Modified to a request without If-None-Match", s.redacted)
		}
		return response{notModified: true}, nil
	default:
		// Read a little, so that the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return response{}, fmt.Errorf("GET %s: %s", s.redacted, resp.Status)
	}

	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	switch {
	case err != nil:
		return response{}, fmt.Errorf("GET %s: read body: %w", s.redacted, err)
	case len(body) > maxBodyBytes:
		return response{}, fmt.Errorf("GET %s: response larger than %d bytes", s.redacted, maxBodyBytes)
	}
	clusters, problems, err := decode(body)
	if err != nil {
		return response{}, fmt.Errorf("GET %s: %w", s.redacted, err)
	}
	return response{clusters: clusters, problems: problems, etag: resp.Header.Get("ETag")}, nil
}

var _ sdk.Source = (*Source)(nil)
