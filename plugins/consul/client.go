package consul

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// errPermissionDenied marks answers that show the token may not read what
// the source needs.
var errPermissionDenied = errors.New("permission denied")

// statusError is a non-200 answer from Consul.
type statusError struct {
	code       int
	body       string
	retryAfter time.Duration // from Retry-After on 429, or 0
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("HTTP %d", e.code)
	if e.body != "" {
		msg += ": " + e.body
	}
	if e.code == http.StatusForbidden {
		msg = "permission denied (" + msg + "); check token or token_file"
	}
	return msg
}

// Is makes a 403 match errPermissionDenied.
func (e *statusError) Is(target error) bool {
	return target == errPermissionDenied && e.code == http.StatusForbidden
}

// rateLimited reports whether err is Consul's 429 and, if so, how long it
// asked the client to wait (0 when it did not say).
func rateLimited(err error) (time.Duration, bool) {
	var se *statusError
	if errors.As(err, &se) && se.code == http.StatusTooManyRequests {
		return se.retryAfter, true
	}
	return 0, false
}

// client reads Consul's HTTP API.
//
// Every request holds a slot of the connection budget for as long as it
// runs, blocking queries included; the transport also caps connections per
// host at the same number. So at most cap(slots) connections are ever open.
type client struct {
	base       string // scheme://host:port
	hc         *http.Client
	tr         *http.Transport
	slots      chan struct{}
	token      *tokenSource
	allowStale bool
	namespace  string
	partition  string
	nodeMeta   []string // "key:value", sorted
	// timeout bounds a non-blocking request, and is added to a blocking
	// request's wait (plus Consul's jitter of wait/16).
	timeout time.Duration
}

// query is what varies between requests.
type query struct {
	dc    string
	index uint64        // wait index; 0 asks without blocking
	wait  time.Duration // with index
	// params are endpoint-specific parameters (tag, filter).
	params url.Values
	// unchanged, when not 0, skips decoding an answer whose index equals
	// it: the caller already holds that state.
	unchanged uint64
}

// queryMeta is what Consul says about an answer besides its body.
type queryMeta struct {
	index          uint64
	filteredByACLs bool
	aclDeny        bool // the agent's default ACL policy is deny
	notModified    bool // q.unchanged matched: out was left alone
}

func newClient(cfg Config, baseDir string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*client, error) {
	tlsConf, err := tlsConfig(cfg, baseDir)
	if err != nil {
		return nil, err
	}
	if dial == nil {
		dial = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	tr := &http.Transport{
		DialContext:         dial,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxConnsPerHost:     cfg.MaxConnections,
		MaxIdleConns:        cfg.MaxConnections,
		MaxIdleConnsPerHost: cfg.MaxConnections,
		IdleConnTimeout:     90 * time.Second,
	}
	tok := &tokenSource{token: cfg.Token.Reveal()}
	if cfg.TokenFile != "" {
		tok.file = resolve(baseDir, cfg.TokenFile)
		if err := tok.reload(); err != nil {
			return nil, fieldError("token_file", err)
		}
	}
	var nodeMeta []string
	for k, v := range cfg.NodeMeta {
		nodeMeta = append(nodeMeta, k+":"+v)
	}
	sort.Strings(nodeMeta)
	return &client{
		base:       cfg.Scheme + "://" + cfg.Address,
		hc:         &http.Client{Transport: tr},
		tr:         tr,
		slots:      make(chan struct{}, cfg.MaxConnections),
		token:      tok,
		allowStale: cfg.AllowStale,
		namespace:  cfg.Namespace,
		partition:  cfg.Partition,
		nodeMeta:   nodeMeta,
		timeout:    30 * time.Second,
	}, nil
}

// get asks Consul for path and decodes the JSON answer into out.
func (c *client) get(ctx context.Context, path string, q query, out any) (queryMeta, error) {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return queryMeta{}, ctx.Err()
	}
	defer func() { <-c.slots }()

	v := url.Values{}
	for k, vals := range q.params {
		v[k] = vals
	}
	if q.dc != "" {
		v.Set("dc", q.dc)
	}
	if c.allowStale {
		v.Set("stale", "")
	}
	if c.namespace != "" {
		v.Set("ns", c.namespace)
	}
	if c.partition != "" {
		v.Set("partition", c.partition)
	}
	for _, m := range c.nodeMeta {
		v.Add("node-meta", m)
	}
	timeout := c.timeout
	if q.index > 0 {
		v.Set("index", strconv.FormatUint(q.index, 10))
		v.Set("wait", strconv.FormatInt(q.wait.Milliseconds(), 10)+"ms")
		timeout += q.wait + q.wait/16
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path+"?"+v.Encode(), nil)
	if err != nil {
		return queryMeta{}, fmt.Errorf("get %s: %w", path, err)
	}
	if tok := c.token.get(); tok != "" {
		req.Header.Set("X-Consul-Token", tok)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the URL: the reason is what matters
		}
		return queryMeta{}, fmt.Errorf("get %s: %w", path, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		se := &statusError{code: resp.StatusCode, body: strings.TrimSpace(string(b))}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			se.retryAfter = time.Duration(s) * time.Second
		}
		if se.code == http.StatusForbidden {
			c.token.reload403()
		}
		return queryMeta{}, fmt.Errorf("get %s: %w", path, se)
	}

	var meta queryMeta
	meta.index, _ = strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	meta.filteredByACLs = resp.Header.Get("X-Consul-Results-Filtered-By-ACLs") == "true"
	meta.aclDeny = resp.Header.Get("X-Consul-Default-ACL-Policy") == "deny"
	if q.unchanged != 0 && meta.index == q.unchanged {
		meta.notModified = true
		_, _ = io.Copy(io.Discard, resp.Body) // keep the connection reusable
		return meta, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return queryMeta{}, fmt.Errorf("get %s: decode: %w", path, err)
	}
	return meta, nil
}

// close drops idle connections; call it once no request runs.
func (c *client) close() { c.tr.CloseIdleConnections() }

// nextIndex applies Consul's rules for the index of the next blocking query
// after an answer with index got: an index that went backwards is reset to 0
// (ask again without blocking), and 0 is never waited on (1 instead), since
// a wait on 0 returns at once.
func nextIndex(prev, got uint64) uint64 {
	switch {
	case got == 0:
		return 1
	case got < prev:
		return 0
	default:
		return got
	}
}

// tokenSource holds the ACL token, re-reading its file after a 403 so a
// rotated token is picked up.
type tokenSource struct {
	file string // "" when the token is inline

	mu    sync.Mutex
	token string
	read  time.Time // last reload, to read the file at most once a second
}

func (t *tokenSource) get() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.token
}

func (t *tokenSource) reload() error {
	b, err := os.ReadFile(t.file)
	if err != nil {
		return fmt.Errorf("read token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return fmt.Errorf("%s is empty", t.file)
	}
	t.mu.Lock()
	t.token, t.read = tok, time.Now()
	t.mu.Unlock()
	return nil
}

// reload403 re-reads the token file after a 403, at most once a second.
func (t *tokenSource) reload403() {
	if t.file == "" {
		return
	}
	t.mu.Lock()
	recent := time.Since(t.read) < time.Second
	t.mu.Unlock()
	if !recent {
		_ = t.reload() // on failure the old token stays; the 403 is reported
	}
}

// tlsConfig builds the client TLS configuration, or nil for http.
func tlsConfig(cfg Config, baseDir string) (*tls.Config, error) {
	if cfg.Scheme != "https" {
		return nil, nil
	}
	host, _, _ := net.SplitHostPort(cfg.Address)
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         host,
		InsecureSkipVerify: cfg.TLS.InsecureSkipVerify, //nolint:gosec // documented as for tests only
	}
	if cfg.TLS.ServerName != "" {
		tc.ServerName = cfg.TLS.ServerName
	}
	if cfg.TLS.CAFile != "" {
		pem, err := os.ReadFile(resolve(baseDir, cfg.TLS.CAFile))
		if err != nil {
			return nil, fieldError("tls.ca_file", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fieldError("tls.ca_file", errors.New("no PEM certificate found"))
		}
		tc.RootCAs = pool
	}
	if cfg.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(resolve(baseDir, cfg.TLS.CertFile), resolve(baseDir, cfg.TLS.KeyFile))
		if err != nil {
			return nil, fieldError("tls.cert_file", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// resolve makes a relative path relative to baseDir.
func resolve(baseDir, path string) string {
	if path == "" || filepath.IsAbs(path) || baseDir == "" {
		return path
	}
	return filepath.Join(baseDir, path)
}

func fieldError(path string, err error) error {
	return sdk.ConfigErrors{{Path: path, Message: err.Error()}}
}
