// Package adminauth guards the admin endpoints. On a loopback address
// they are open to the host; anywhere else they require a bearer token
// read from a file (Token; a browser may present it in a cookie) or a
// client certificate (the admin server's own TLS with a client CA, see
// package certs). CheckExposure is the rule the configuration enforces.
package adminauth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
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

// CookieName is the cookie in which a browser presents the token. It is
// set by a request that carries the token as ?token=, and holds the
// token's SHA-256, not the token: it opens what a browser reads (GET and
// HEAD) and nothing else.
const CookieName = "xdsbridge_admin_token"

// Require serves next only to requests with "Authorization: Bearer
// <token>", or, for GET and HEAD, with the cookie a browser gets from
// ?token=<token>: such a request is answered with the cookie (HttpOnly,
// SameSite=Strict) and a redirect to the same URL without the token, so
// the token leaves the address bar and history. Anything else is answered
// 401, with a form asking for the token when the client reads HTML. Paths
// in public (exact matches, e.g. "/healthz", "/readyz" for probes) need
// no token.
func (t *Token) Require(next http.Handler, public ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(public, r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		read := r.Method == http.MethodGet || r.Method == http.MethodHead
		if q := r.URL.Query(); read && q.Has("token") {
			t.login(w, r, q)
			return
		}
		if presented, ok := bearer(r.Header.Get("Authorization")); ok && t.Valid(presented) {
			next.ServeHTTP(w, r)
			return
		}
		if c, err := r.Cookie(CookieName); read && err == nil && t.validCookie(c.Value) {
			next.ServeHTTP(w, r)
			return
		}
		t.refuse(w, r)
	})
}

// login answers a request carrying ?token=: with the cookie and a redirect
// to the same path and query without the token when it is valid.
func (t *Token) login(w http.ResponseWriter, r *http.Request, q url.Values) {
	presented := q.Get("token")
	if !t.Valid(presented) {
		t.refuse(w, r)
		return
	}
	d := sha256.Sum256([]byte(presented))
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    base64.RawURLEncoding.EncodeToString(d[:]),
		Path:     "/",
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	q.Del("token")
	// One leading slash: "//host" or "/\host" would leave the server.
	target := "/" + strings.TrimLeft(r.URL.Path, "/\\")
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// validCookie reports, in constant time, whether a cookie value holds the
// current token's digest.
func (t *Token) validCookie(value string) bool {
	got, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	want := t.current()
	return subtle.ConstantTimeCompare(got, want[:]) == 1
}

// refuse answers 401 and counts the failure. A browser (a GET that
// accepts HTML) gets a form that asks for the token and sends it as
// ?token= with the rest of the query kept.
func (t *Token) refuse(w http.ResponseWriter, r *http.Request) {
	t.failures.Add(1)
	w.Header().Set("WWW-Authenticate", `Bearer realm="xdsbridge admin"`)
	if r.Method != http.MethodGet || !strings.Contains(r.Header.Get("Accept"), "text/html") {
		http.Error(w, "admin: a valid bearer token is required", http.StatusUnauthorized)
		return
	}
	q := r.URL.Query()
	q.Del("token")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(http.StatusUnauthorized)
	_ = loginPage.Execute(w, q)
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xdsbridge admin: token required</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:15px/1.5 system-ui,sans-serif;margin:4rem auto;max-width:28rem;color:#1f2328}
input{font:inherit;padding:.35rem .5rem}input[type=password]{width:100%;box-sizing:border-box;margin:.5rem 0}</style></head>
<body><h1>xdsbridge admin</h1><p>A valid admin token is required (the content of <code>admin.token_file</code>).</p>
<form method="get">{{range $k, $vs := .}}{{range $vs}}<input type="hidden" name="{{$k}}" value="{{.}}">{{end}}{{end}}
<label>Token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
<input type="submit" value="Continue"></form></body></html>
`))

func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
