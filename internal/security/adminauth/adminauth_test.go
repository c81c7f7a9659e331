package adminauth_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xdsbridge/xdsbridge/internal/security/adminauth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:9902", true},
		{"127.1.2.3:0", true},
		{"[::1]:9902", true},
		{"[::ffff:127.0.0.1]:9902", true},
		{"localhost:9902", true},
		{"LocalHost:9902", true},
		{":9902", false},
		{"0.0.0.0:9902", false},
		{"[::]:9902", false},
		{"10.0.0.7:9902", false},
		{"admin.example.org:9902", false},
		{"localhost.example.org:9902", false},
		{"127.0.0.1", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := adminauth.IsLoopback(tt.addr); got != tt.want {
			t.Errorf("IsLoopback(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestCheckExposure(t *testing.T) {
	tests := []struct {
		addr         string
		token, mtls  bool
		wantExposure bool
	}{
		{"127.0.0.1:9902", false, false, false},
		{"", false, false, false},
		{"0.0.0.0:9902", false, false, true},
		{":9902", false, false, true},
		{"0.0.0.0:9902", true, false, false},
		{"0.0.0.0:9902", false, true, false},
	}
	for _, tt := range tests {
		err := adminauth.CheckExposure(tt.addr, tt.token, tt.mtls)
		if (err != nil) != tt.wantExposure {
			t.Errorf("CheckExposure(%q, %v, %v) = %v", tt.addr, tt.token, tt.mtls, err)
		}
		if err != nil && !strings.Contains(err.Error(), "admin.token_file") {
			t.Errorf("error %q does not say what to set", err)
		}
	}
}

func TestLoopbackOnly(t *testing.T) {
	h := adminauth.LoopbackOnly(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	tests := []struct {
		remote string
		want   int
	}{
		{"127.0.0.1:40000", http.StatusTeapot},
		{"[::1]:40000", http.StatusTeapot},
		{"10.1.2.3:40000", http.StatusForbidden},
		{"[2001:db8::1]:40000", http.StatusForbidden},
		{"garbage", http.StatusForbidden},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/debug/clients", nil)
		r.RemoteAddr = tt.remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tt.want {
			t.Errorf("from %s: %d, want %d", tt.remote, w.Code, tt.want)
		}
	}
	// And through a real connection on 127.0.0.1.
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot {
		t.Errorf("over loopback: %s", resp.Status)
	}
}

const token = "2bS0q7c1-ZrQv9-admin-token"

func writeToken(t *testing.T, path, tok string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestNewTokenRefuses(t *testing.T) {
	tests := []struct {
		name    string
		content *string
		want    string
	}{
		{"missing", nil, "no such file"},
		{"empty", ptr("\n"), "shorter than 16 bytes"},
		{"short", ptr("abc"), "shorter than 16 bytes"},
		{"two words", ptr(token + " " + token), "more than one word"},
		{"huge", ptr(strings.Repeat("a", 5000)), "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "token")
			if tt.content != nil {
				writeToken(t, f, *tt.content)
			}
			_, err := adminauth.NewToken(f, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewToken = %v, want an error saying %q", err, tt.want)
			}
			if tt.content != nil && len(*tt.content) > 2 && strings.Contains(err.Error(), (*tt.content)[:3]) {
				t.Errorf("error %q quotes the file", err)
			}
		})
	}
}

func ptr(s string) *string { return &s }

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestRequire(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	writeToken(t, f, token+"\n")
	logs := &lockedBuffer{}
	tok, err := adminauth.NewToken(f, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(tok.Require(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "secret stuff")
	}), "/healthz", "/readyz"))
	defer srv.Close()

	get := func(path, auth string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusUnauthorized {
			if resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if strings.Contains(string(b), "secret stuff") {
				t.Error("401 with the content")
			}
		}
		return resp.StatusCode
	}
	tests := []struct {
		name, path, auth string
		want             int
	}{
		{"no header", "/debug/clients", "", http.StatusUnauthorized},
		{"wrong token", "/debug/clients", "Bearer " + strings.Repeat("x", len(token)), http.StatusUnauthorized},
		{"prefix of the token", "/debug/clients", "Bearer " + token[:len(token)-1], http.StatusUnauthorized},
		{"token and more", "/debug/clients", "Bearer " + token + "x", http.StatusUnauthorized},
		{"basic", "/debug/clients", "Basic " + token, http.StatusUnauthorized},
		{"no scheme", "/debug/clients", token, http.StatusUnauthorized},
		{"empty bearer", "/debug/clients", "Bearer ", http.StatusUnauthorized},
		{"right token", "/debug/clients", "Bearer " + token, http.StatusOK},
		{"scheme in lower case", "/metrics", "bearer " + token, http.StatusOK},
		{"public path", "/healthz", "", http.StatusOK},
		{"public path is exact", "/healthz/x", "", http.StatusUnauthorized},
	}
	var refused uint64
	for _, tt := range tests {
		if got := get(tt.path, tt.auth); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
		if tt.want == http.StatusUnauthorized {
			refused++
		}
	}
	if got := tok.Failures(); got != refused {
		t.Errorf("Failures = %d, want %d", got, refused)
	}

	// Rotation: the new token is taken within a couple of seconds and
	// the old one stops working.
	next := "9Qm3-rotated-admin-token-x71"
	writeToken(t, f, next)
	deadline := time.Now().Add(10 * time.Second)
	for get("/x", "Bearer "+next) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the rotated token was not taken within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if get("/x", "Bearer "+token) != http.StatusUnauthorized {
		t.Error("the old token still works")
	}

	// A bad file keeps the last good token, and the log says so without
	// quoting anything.
	writeToken(t, f, "short")
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "keeping the previous token") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning about the bad token file within 10s:\n%s", logs)
		}
		get("/x", "Bearer "+next)
		time.Sleep(50 * time.Millisecond)
	}
	if get("/x", "Bearer "+next) != http.StatusOK {
		t.Error("the last good token stopped working")
	}
	for _, s := range []string{token, next, "short\""} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the log holds %q:\n%s", s, logs)
		}
	}
}

// A browser logs in with ?token=: it gets a cookie and a redirect to the
// same URL without the token, and the cookie then opens GET requests and
// nothing else.
func TestRequireBrowser(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	writeToken(t, f, token)
	tok, err := adminauth.NewToken(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(tok.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secret stuff "+r.Method)
	})))
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, cookie *http.Cookie, accept string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cookie != nil {
			req.AddCookie(cookie)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	logins := []struct {
		name, path, location string
	}{
		{"root", "/?token=" + token, "/"},
		{"query kept", "/clients?node=n%261&token=" + token + "&refresh=10", "/clients?node=n%261&refresh=10"},
		{"no open redirect", "//evil.example/?token=" + token, "/evil.example/"},
		{"no open redirect with a backslash", "/%5Cevil.example/?token=" + token, "/evil.example/"},
	}
	var cookie *http.Cookie
	for _, tt := range logins {
		resp, _ := do(http.MethodGet, tt.path, nil, "")
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != tt.location {
			t.Errorf("%s: %s, Location %q, want 303 to %q", tt.name, resp.Status, resp.Header.Get("Location"), tt.location)
		}
		cs := resp.Cookies()
		if len(cs) != 1 || cs[0].Name != adminauth.CookieName || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode || cs[0].Path != "/" {
			t.Fatalf("%s: cookies %v, want one HttpOnly SameSite=Strict cookie for /", tt.name, cs)
		}
		if strings.Contains(cs[0].Value, token) {
			t.Errorf("%s: the cookie holds the token", tt.name)
		}
		cookie = cs[0]
	}

	wrong := &http.Cookie{Name: adminauth.CookieName, Value: strings.Repeat("A", 43)}
	tests := []struct {
		name, method, path string
		cookie             *http.Cookie
		want               int
	}{
		{"cookie opens GET", http.MethodGet, "/debug/clients", cookie, http.StatusOK},
		{"cookie opens HEAD", http.MethodHead, "/debug/clients", cookie, http.StatusOK},
		{"cookie does not open POST", http.MethodPost, "/-/reload", cookie, http.StatusUnauthorized},
		{"no cookie", http.MethodGet, "/", nil, http.StatusUnauthorized},
		{"wrong cookie", http.MethodGet, "/", wrong, http.StatusUnauthorized},
		{"garbage cookie", http.MethodGet, "/", &http.Cookie{Name: adminauth.CookieName, Value: "x"}, http.StatusUnauthorized},
		{"wrong token in the query", http.MethodGet, "/?token=" + strings.Repeat("x", len(token)), nil, http.StatusUnauthorized},
		{"token in the query of a POST", http.MethodPost, "/-/reload?token=" + token, nil, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		resp, body := do(tt.method, tt.path, tt.cookie, "")
		if resp.StatusCode != tt.want {
			t.Errorf("%s: %s, want %d", tt.name, resp.Status, tt.want)
		}
		if tt.want == http.StatusUnauthorized && strings.Contains(body, "secret stuff") {
			t.Errorf("%s: 401 with the content", tt.name)
		}
	}

	// A browser without the cookie gets a form that keeps the query,
	// escaped, and sends the token as ?token=.
	resp, body := do(http.MethodGet, "/clients?node=%3Cscript%3Ealert(1)%3C/script%3E", nil, "text/html,application/xhtml+xml")
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("browser without a cookie: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`<form method="get">`, `name="token"`, `name="node" value="&lt;script&gt;alert(1)&lt;/script&gt;"`} {
		if !strings.Contains(body, want) {
			t.Errorf("login form lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Errorf("login form holds an unescaped query:\n%s", body)
	}
}
