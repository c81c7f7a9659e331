// Package adminauth guards the admin endpoints. On a loopback address
// they are open to the host; anywhere else they require a bearer token
// read from a file (Token) or a client certificate (the admin server's
// own TLS with a client CA, see package certs). CheckExposure is the rule
// the configuration enforces.
package adminauth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// IsLoopback reports whether a listen address host:port binds only to
// loopback: a loopback IP (127.0.0.0/8, ::1) or "localhost". An empty
// host, 0.0.0.0, :: and every other name bind (or may resolve) elsewhere.
func IsLoopback(address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// CheckExposure is the rule for admin.address: a non-loopback address
// needs a token file or a client CA. The error says what to set.
func CheckExposure(address string, hasTokenFile, hasClientCA bool) error {
	if address == "" || IsLoopback(address) || hasTokenFile || hasClientCA {
		return nil
	}
	return fmt.Errorf("%s is not a loopback address: set admin.token_file, or listen on 127.0.0.1", address)
}

// LoopbackOnly refuses, with 403, requests that do not come from a
// loopback address: a second line behind a loopback bind.
func LoopbackOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !ap.Addr().Unmap().IsLoopback() {
			http.Error(w, "admin: loopback clients only", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// MinTokenLength is the shortest token accepted, in bytes.
const MinTokenLength = 16

// maxTokenFile bounds what is read from a token file.
const maxTokenFile = 4 << 10

// recheck is how often the token file is looked at again for rotation.
const recheck = time.Second

// Token is a bearer token read from a file. The file is looked at again
// at most once a second, so a rotated token is taken up without a
// restart; when the file becomes unreadable or invalid, the last good
// token stays and a warning is logged.
type Token struct {
	file   string
	logger *slog.Logger

	mu      sync.Mutex
	digest  [sha256.Size]byte // of the token
	stat    fileStamp
	checked time.Time
	warned  string

	failures atomic.Uint64
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// NewToken reads the token file: one token, surrounding whitespace
// ignored, at least MinTokenLength bytes. Its errors never hold the
// file's contents.
func NewToken(file string, logger *slog.Logger) (*Token, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := &Token{file: file, logger: logger}
	st, d, err := readToken(file)
	if err != nil {
		return nil, err
	}
	t.stat, t.digest, t.checked = st, d, time.Now()
	return t, nil
}

func readToken(file string) (fileStamp, [sha256.Size]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return fileStamp{}, [sha256.Size]byte{}, fmt.Errorf("admin token: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileStamp{}, [sha256.Size]byte{}, fmt.Errorf("admin token: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	switch {
	case err != nil:
		return fileStamp{}, [sha256.Size]byte{}, fmt.Errorf("admin token: %w", err)
	case len(b) > maxTokenFile:
		return fileStamp{}, [sha256.Size]byte{}, fmt.Errorf("admin token: %s: larger than %d bytes", file, maxTokenFile)
	}
	tok := bytes.TrimSpace(b)
	switch {
	case len(tok) < MinTokenLength:
		return fileStamp{}, [sha256.Size]byte{}, fmt.Errorf("admin token: %s: shorter than %d bytes", file, MinTokenLength)
	case bytes.ContainsAny(tok, " \t\r\n"):
		return fileStamp{}, [sha256.Size]byte{}, fmt.Errorf("admin token: %s: holds more than one word", file)
	}
	return fileStamp{fi.ModTime(), fi.Size()}, sha256.Sum256(tok), nil
}

// current returns the digest of the token, re-reading the file when it
// changed.
func (t *Token) current() [sha256.Size]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	if time.Since(t.checked) < recheck {
		return t.digest
	}
	t.checked = time.Now()
	fi, err := os.Stat(t.file)
	if err == nil && (fileStamp{fi.ModTime(), fi.Size()}) == t.stat {
		return t.digest
	}
	st, d, err := readToken(t.file)
	if err != nil {
		if msg := err.Error(); msg != t.warned {
			t.warned = msg
			t.logger.Warn("admin: keeping the previous token", "err", err)
		}
		return t.digest
	}
	if d != t.digest {
		t.logger.Info("admin: token rotated", "token_file", t.file)
	}
	t.stat, t.digest, t.warned = st, d, ""
	return t.digest
}

// Valid reports, in constant time, whether a presented token is the
// current one.
func (t *Token) Valid(presented string) bool {
	want := t.current()
	got := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// Failures is how many requests were refused for a missing or wrong
// token.
func (t *Token) Failures() uint64 { return t.failures.Load() }

// Require serves next only to requests with "Authorization: Bearer
// <token>", and answers 401 otherwise. Paths in public (exact matches,
// e.g. "/healthz", "/readyz" for probes) need no token.
func (t *Token) Require(next http.Handler, public ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(public, r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		presented, ok := bearer(r.Header.Get("Authorization"))
		if !ok || !t.Valid(presented) {
			t.failures.Add(1)
			w.Header().Set("WWW-Authenticate", `Bearer realm="xdsbridge admin"`)
			http.Error(w, "admin: a valid bearer token is required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
