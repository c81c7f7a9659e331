// Package certs serves TLS from certificate files and follows them: when
// the files change on disk, new handshakes get the new certificate (and
// the new client CAs) while connections already open keep theirs. Files
// that do not load are not used: the previous certificate stays, and the
// log says why.
//
// A Reloader gives gRPC credentials (ServerCredentials) and a
// *tls.Config for an http.Server (TLSConfig); both read the current
// files' contents at every handshake. Run watches the files' directories
// with fsnotify, which also sees the symlink swap of a Kubernetes secret
// volume, and re-reads them every PollInterval besides, for file systems
// that send no events.
package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"google.golang.org/grpc/credentials"
)

// DefaultPollInterval is how often Run re-reads the files when
// Options.PollInterval is zero.
const DefaultPollInterval = time.Minute

// settle is how long Run waits after a file event for the others of the
// same change (a certificate and its key are two writes).
const settle = 200 * time.Millisecond

// Options say which files to serve.
type Options struct {
	Logger *slog.Logger
	// CertFile is the PEM certificate chain, leaf first. Required.
	CertFile string
	// KeyFile is the PEM private key of the leaf. Required.
	KeyFile string
	// ClientCAFile is a PEM bundle of the CAs that sign client
	// certificates. When set, every client must present a certificate
	// that chains to one of them; when empty, clients present none.
	ClientCAFile string
	// MinVersion is the lowest TLS version accepted: tls.VersionTLS12
	// (the default when zero) or tls.VersionTLS13.
	MinVersion uint16
	// PollInterval is how often the files are re-read whether or not an
	// event came. Zero means DefaultPollInterval.
	PollInterval time.Duration
	// OnReload, when set, is called after every attempt to load changed
	// files: with nil when they are served from now on, with the reason
	// when they were refused. For a reload-failures counter.
	OnReload func(error)
}

// Reloader serves the current contents of a certificate, its key and
// the client CAs.
type Reloader struct {
	opts Options
	cur  atomic.Pointer[loaded]

	mu      sync.Mutex // serializes Reload
	refused [sha256.Size]byte

	// noWatch makes Run poll only, for tests of the polling path.
	noWatch bool
}

// loaded is one consistent set of files, with the configs built from
// them once, for every handshake to share.
type loaded struct {
	digest [sha256.Size]byte
	leaf   *x509.Certificate
	grpc   *tls.Config
	http   *tls.Config
}

// New loads the files. It fails when they do not load; nothing is
// watched until Run.
func New(opts Options) (*Reloader, error) {
	switch {
	case opts.CertFile == "" || opts.KeyFile == "":
		return nil, errors.New("certs: a certificate file and a key file are both required")
	case opts.MinVersion != 0 && opts.MinVersion != tls.VersionTLS12 && opts.MinVersion != tls.VersionTLS13:
		return nil, fmt.Errorf("certs: minimum TLS version %#x: want TLS 1.2 or 1.3", opts.MinVersion)
	}
	if opts.MinVersion == 0 {
		opts.MinVersion = tls.VersionTLS12
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{opts: opts}
	digest, files, err := r.read()
	if err != nil {
		return nil, err
	}
	l, err := r.load(digest, files)
	if err != nil {
		return nil, err
	}
	r.cur.Store(l)
	return r, nil
}

// files are the bytes of the three files.
type files struct{ cert, key, ca []byte }

// read reads the files and returns the digest of their contents.
func (r *Reloader) read() ([sha256.Size]byte, files, error) {
	var f files
	var err error
	if f.cert, err = os.ReadFile(r.opts.CertFile); err != nil {
		return [sha256.Size]byte{}, f, fmt.Errorf("certs: %w", err)
	}
	if f.key, err = os.ReadFile(r.opts.KeyFile); err != nil {
		return [sha256.Size]byte{}, f, fmt.Errorf("certs: %w", err)
	}
	if r.opts.ClientCAFile != "" {
		if f.ca, err = os.ReadFile(r.opts.ClientCAFile); err != nil {
			return [sha256.Size]byte{}, f, fmt.Errorf("certs: %w", err)
		}
	}
	h := sha256.New()
	for _, b := range [][]byte{f.cert, f.key, f.ca} {
		h.Write(fmt.Appendf(nil, "%d:", len(b)))
		h.Write(b)
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d, f, nil
}

// load checks the files and builds the configs. Its errors name the
// files, never their contents.
func (r *Reloader) load(digest [sha256.Size]byte, f files) (*loaded, error) {
	cert, err := tls.X509KeyPair(f.cert, f.key)
	if err != nil {
		return nil, fmt.Errorf("certs: %s with %s: %w", r.opts.CertFile, r.opts.KeyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certs: %s: %w", r.opts.CertFile, err)
		}
	}
	if time.Now().After(leaf.NotAfter) {
		return nil, fmt.Errorf("certs: %s: certificate expired at %s", r.opts.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	var pool *x509.CertPool
	if r.opts.ClientCAFile != "" {
		if pool, err = parsePool(f.ca); err != nil {
			return nil, fmt.Errorf("certs: %s: %w", r.opts.ClientCAFile, err)
		}
	}
	base := tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   r.opts.MinVersion,
	}
	if pool != nil {
		base.ClientAuth = tls.RequireAndVerifyClientCert
		base.ClientCAs = pool
		// A resumed session skips the client's certificate: with
		// tickets, a client whose CA was removed could come back on an
		// old ticket. xDS clients reconnect rarely; full handshakes are
		// cheap here.
		base.SessionTicketsDisabled = true
	}
	g, h := base.Clone(), base.Clone()
	g.NextProtos = []string{"h2"}
	h.NextProtos = []string{"h2", "http/1.1"}
	return &loaded{digest: digest, leaf: leaf, grpc: g, http: h}, nil
}

// parsePool reads every certificate of a PEM bundle, failing on any
// block that is not one.
func parsePool(b []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for len(bytes.TrimSpace(b)) > 0 {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("not PEM (or trailing garbage after the last certificate)")
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is a %q, want CERTIFICATE", n+1, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errors.New("no certificates")
	}
	return pool, nil
}

// Reload re-reads the files now and serves them if they changed and
// load. On an error the previous files stay in use. Run calls it; call
// it too on SIGHUP, say.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	digest, f, err := r.read()
	if err == nil && digest == r.cur.Load().digest {
		r.refused = [sha256.Size]byte{}
		return nil
	}
	var l *loaded
	if err == nil {
		l, err = r.load(digest, f)
	} else {
		digest = sha256.Sum256([]byte(err.Error()))
	}
	if err != nil {
		// Say it once per bad set of files (or read error), not at
		// every poll.
		if digest != r.refused {
			r.refused = digest
			r.opts.Logger.Warn("tls: keeping the previous certificate: the files on disk do not load",
				"cert_file", r.opts.CertFile, "err", err,
				"serving_not_after", r.cur.Load().leaf.NotAfter)
			if r.opts.OnReload != nil {
				r.opts.OnReload(err)
			}
		}
		return err
	}
	r.cur.Store(l)
	r.refused = [sha256.Size]byte{}
	r.opts.Logger.Info("tls: serving a new certificate", "cert_file", r.opts.CertFile,
		"subject", l.leaf.Subject.String(), "serial", l.leaf.SerialNumber.Text(16), "not_after", l.leaf.NotAfter,
		"client_ca_file", r.opts.ClientCAFile)
	if r.opts.OnReload != nil {
		r.opts.OnReload(nil)
	}
	return nil
}

// Run follows the files until ctx ends. It returns nil then; it never
// fails, as polling stands in when file events are not available.
func (r *Reloader) Run(ctx context.Context) error {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if !r.noWatch {
		if w, err := r.watch(); err != nil {
			r.opts.Logger.Warn("tls: cannot watch the certificate files; polling only",
				"poll_interval", r.opts.PollInterval, "err", err)
		} else {
			defer w.Close()
			events, errs = w.Events, w.Errors
		}
	}
	poll := time.NewTicker(r.opts.PollInterval)
	defer poll.Stop()
	var settled <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if settled == nil {
				settled = time.After(settle)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			r.opts.Logger.Warn("tls: watching the certificate files", "err", err)
		case <-settled:
			settled = nil
			_ = r.Reload()
		case <-poll.C:
			_ = r.Reload()
		}
	}
}

// watch watches the directories of the files: editors, cert-manager and
// Kubernetes replace files (rename, symlink swap) rather than write them.
func (r *Reloader) watch() (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, f := range []string{r.opts.CertFile, r.opts.KeyFile, r.opts.ClientCAFile} {
		if f != "" {
			dirs = append(dirs, filepath.Dir(f))
		}
	}
	slices.Sort(dirs)
	for _, d := range slices.Compact(dirs) {
		if err := w.Add(d); err != nil {
			w.Close()
			return nil, fmt.Errorf("watch %s: %w", d, err)
		}
	}
	return w, nil
}

// Leaf is the certificate served now, for an expiry gauge.
func (r *Reloader) Leaf() *x509.Certificate { return r.cur.Load().leaf }

// RequiresClientCert reports whether clients must present a certificate.
func (r *Reloader) RequiresClientCert() bool { return r.opts.ClientCAFile != "" }

// TLSConfig is for an http.Server: set it as the server's TLSConfig and
// call ServeTLS(listener, "", ""). It negotiates HTTP/2 and HTTP/1.1.
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: r.opts.MinVersion,
		NextProtos: []string{"h2", "http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.cur.Load().http, nil
		},
	}
}

// ServerCredentials are for a gRPC server: grpc.Creds(r.ServerCredentials()).
func (r *Reloader) ServerCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{
		MinVersion: r.opts.MinVersion,
		NextProtos: []string{"h2"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.cur.Load().grpc, nil
		},
	})
}
