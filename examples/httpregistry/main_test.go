package main

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeRegistry serves a body with an ETag and answers If-None-Match, or an
// error status. It counts what it answered.
type fakeRegistry struct {
	mu       sync.Mutex
	status   int // 0 serves body
	body     string
	answered map[int]int // status code → responses
	headers  []http.Header
}

func newFakeRegistry(body string) *fakeRegistry {
	return &fakeRegistry{body: body, answered: map[int]int{}}
}

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.headers = append(f.headers, r.Header.Clone())
	code := f.status
	switch {
	case code != 0:
		http.Error(w, "registry broke", code)
	case r.Header.Get("If-None-Match") == etag(f.body):
		code = http.StatusNotModified
		w.WriteHeader(code)
	default:
		code = http.StatusOK
		w.Header().Set("ETag", etag(f.body))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, f.body)
	}
	f.answered[code]++
}

func etag(body string) string { return fmt.Sprintf(`"%x"`, sha256.Sum256([]byte(body))) }

// set makes the registry answer with status (0 for the body) from now on.
func (f *fakeRegistry) set(status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.body = status, body
}

func (f *fakeRegistry) count(code int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.answered[code]
}

// lastHeader returns the headers of the last request.
func (f *fakeRegistry) lastHeader() http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.headers) == 0 {
		return nil
	}
	return f.headers[len(f.headers)-1]
}
