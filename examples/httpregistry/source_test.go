package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// wait bounds every wait in these tests.
const wait = 10 * time.Second

func TestPoller(t *testing.T) {
	a := sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{{Address: "10.0.0.1", Port: 80}}}
	a2 := sdk.Cluster{Name: "a", Endpoints: []sdk.Endpoint{{Address: "10.0.0.2", Port: 80}}}
	b := sdk.Cluster{Name: "b"}
	body := func(etag string, cs ...sdk.Cluster) response {
		m := map[string]sdk.Cluster{}
		for _, c := range cs {
			m[c.Name] = c
		}
		return response{clusters: m, etag: etag}
	}
	connected := &sdk.Status{State: sdk.Connected}
	down := func(reason string) *sdk.Status { return &sdk.Status{State: sdk.Disconnected, Reason: reason} }

	type step struct {
		resp     response
		err      error
		wantETag string      // the If-None-Match the poller sends
		want     *sdk.Update // nil: nothing sent
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "full state, then only changes",
			steps: []step{
				{resp: body(`"1"`, b, a), want: &sdk.Update{Full: true, Clusters: []sdk.Cluster{a, b}, Status: connected}},
				{resp: response{notModified: true}, wantETag: `"1"`},
				{resp: body(`"1"`, b, a), wantETag: `"1"`}, // a registry without 304: same body, nothing to say
				{resp: body(`"2"`, a2, b), wantETag: `"1"`, want: &sdk.Update{Clusters: []sdk.Cluster{a2}}},
				{resp: body(`"3"`, a2), wantETag: `"2"`, want: &sdk.Update{RemovedClusters: []string{"b"}}},
				{resp: body(`"4"`), wantETag: `"3"`, want: &sdk.Update{RemovedClusters: []string{"a"}}},
			},
		},
		{
			name: "empty registry is a full state",
			steps: []step{
				{resp: body(""), want: &sdk.Update{Full: true, Clusters: []sdk.Cluster{}, Status: connected}},
				{resp: body(""), wantETag: ""},
			},
		},
		{
			name: "down before the first state",
			steps: []step{
				{err: errors.New("connection refused"), want: &sdk.Update{Status: down("connection refused")}},
				{err: errors.New("connection refused")},
				{resp: body(`"1"`, a), want: &sdk.Update{Full: true, Clusters: []sdk.Cluster{a}, Status: connected}},
			},
		},
		{
			name: "outage keeps quiet about data and recovers",
			steps: []step{
				{resp: body(`"1"`, a), want: &sdk.Update{Full: true, Clusters: []sdk.Cluster{a}, Status: connected}},
				{err: errors.New("500 Internal Server Error"), wantETag: `"1"`, want: &sdk.Update{Status: down("500 Internal Server Error")}},
				{err: errors.New("500 Internal Server Error"), wantETag: `"1"`},
				{err: errors.New("not JSON"), wantETag: `"1"`, want: &sdk.Update{Status: down("not JSON")}},
				{resp: response{notModified: true}, wantETag: `"1"`, want: &sdk.Update{Status: connected}},
				{err: errors.New("timeout"), wantETag: `"1"`, want: &sdk.Update{Status: down("timeout")}},
				{resp: body(`"2"`, a2, b), wantETag: `"1"`, want: &sdk.Update{Clusters: []sdk.Cluster{a2, b}, Status: connected}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				next    step
				gotETag string
			)
			p := &poller{
				log: slog.New(slog.DiscardHandler),
				fetch: func(_ context.Context, etag string) (response, error) {
					gotETag = etag
					return next.resp, next.err
				},
			}
			for i, s := range tt.steps {
				next = s
				u, ok := p.poll(t.Context())
				if gotETag != s.wantETag {
					t.Errorf("step %d: If-None-Match %q; want %q", i, gotETag, s.wantETag)
				}
				switch {
				case s.want == nil && ok:
					t.Fatalf("step %d: sent %+v; want nothing", i, u)
				case s.want != nil && !ok:
					t.Fatalf("step %d: sent nothing; want %+v", i, *s.want)
				case s.want != nil && !reflect.DeepEqual(u, *s.want):
					t.Fatalf("step %d: sent\n%+v\nwant\n%+v", i, u, *s.want)
				}
			}
		})
	}
}

// newTestSource returns a Source for url whose connections are closed when
// the test ends.
func newTestSource(t *testing.T, url string, timeout time.Duration) *Source {
	t.Helper()
	cfg := DefaultConfig()
	cfg.URL, cfg.Interval, cfg.Timeout = url, 20*time.Millisecond, timeout
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.client.CloseIdleConnections)
	return s
}

func TestFetch(t *testing.T) {
	const good = `{"services":[{"name":"web","endpoints":[{"address":"10.0.0.1","port":80}]}]}`
	reg := newFakeRegistry(good)
	srv := httptest.NewServer(reg)
	defer srv.Close()
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(wait):
		}
	}))
	defer hanging.Close()
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"services":[], "pad": "`, strings.Repeat("x", maxBodyBytes), `"}`)
	}))
	defer huge.Close()
	s := newTestSource(t, srv.URL+"/services", wait)

	t.Run("200 with an ETag", func(t *testing.T) {
		resp, err := s.fetch(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		if resp.notModified || len(resp.clusters) != 1 || resp.etag != etag(good) {
			t.Fatalf("response %+v; want web and ETag %s", resp, etag(good))
		}
		h := reg.lastHeader()
		if h.Get("Accept") != "application/json" || h.Get("If-None-Match") != "" {
			t.Fatalf("request headers %v", h)
		}
	})
	t.Run("304 to If-None-Match", func(t *testing.T) {
		resp, err := s.fetch(t.Context(), etag(good))
		if err != nil || !resp.notModified {
			t.Fatalf("response %+v, %v; want not modified", resp, err)
		}
	})
	t.Run("changed body despite If-None-Match", func(t *testing.T) {
		resp, err := s.fetch(t.Context(), `"stale"`)
		if err != nil || resp.notModified || resp.etag != etag(good) {
			t.Fatalf("response %+v, %v; want the body", resp, err)
		}
	})

	failures := []struct {
		name string
		s    *Source
		set  func()
		etag string
		want string
	}{
		{name: "500", s: s, set: func() { reg.set(500, good) }, want: "GET " + srv.URL + "/services: 500 Internal Server Error"},
		{name: "garbage", s: s, set: func() { reg.set(0, "<html>") }, want: "response is not the expected JSON"},
		{name: "unrequested 304", s: newTestSource(t, srv.URL, wait), set: func() { reg.set(304, "") }, want: "304 Not Modified to a request without If-None-Match"},
		{name: "timeout", s: newTestSource(t, hanging.URL, 100*time.Millisecond), want: "context deadline exceeded"},
		{name: "huge", s: newTestSource(t, huge.URL, wait), want: "response larger than 16777216 bytes"},
		{name: "refused", s: newTestSource(t, "http://127.0.0.1:1/", wait), want: "connection refused"},
		{name: "password redacted", s: newTestSource(t, strings.Replace(srv.URL, "//", "//user:secret@", 1), wait), set: func() { reg.set(500, good) }, want: "user:xxxxx@"},
		{name: "password redacted by the client", s: newTestSource(t, "http://user:secret@127.0.0.1:1/", wait), want: "user:***@"},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			if tt.set != nil {
				tt.set()
			}
			resp, err := tt.s.fetch(t.Context(), tt.etag)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("fetch = %+v, %v; want an error mentioning %q", resp, err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("error %q shows the password", err)
			}
		})
	}
}

func TestRun(t *testing.T) {
	reg := newFakeRegistry(`{"services":[{"name":"web","endpoints":[{"address":"10.0.0.1","port":80}]}]}`)
	srv := httptest.NewServer(reg)
	defer srv.Close()
	s := newTestSource(t, srv.URL, wait)

	// Run twice on one Source: each Run starts with a full state.
	for run := range 2 {
		ctx, cancel := context.WithCancel(t.Context())
		up := make(chan sdk.Update)
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx, up) }()
		select {
		case u := <-up:
			if !u.Full || len(u.Clusters) != 1 || u.Status == nil || u.Status.State != sdk.Connected {
				t.Fatalf("run %d: first update %+v; want the full state, connected", run, u)
			}
		case <-time.After(wait):
			t.Fatalf("run %d: no update within %s", run, wait)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: Run = %v; want nil", run, err)
			}
		case <-time.After(wait):
			t.Fatalf("run %d: Run did not return within %s of its context ending", run, wait)
		}
	}
}

// TestRunStopsMidPoll checks that Run returns promptly when its context ends
// during a slow poll, without reporting its own cancellation as an outage.
func TestRunStopsMidPoll(t *testing.T) {
	polled := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case polled <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-time.After(wait):
		}
	}))
	defer srv.Close()
	s := newTestSource(t, srv.URL, wait)

	ctx, cancel := context.WithCancel(t.Context())
	up := make(chan sdk.Update, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, up) }()
	select {
	case <-polled:
	case <-time.After(wait):
		t.Fatalf("no poll within %s", wait)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatalf("Run did not return within %s of its context ending", wait)
	}
	select {
	case u := <-up:
		t.Fatalf("Run sent %+v while stopping; want nothing", u)
	default:
	}
}
