package dns

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// These tests run the source against in-process servers, for what a real
// server cannot be made to do on demand: truncate, fail in bursts, answer
// late or answer garbage.

const srvName = "_http._tcp.web.example."

func TestTruncatedAnswerRetriedOverTCP(t *testing.T) {
	records := []string{}
	var want []string
	for i := range 200 {
		records = append(records,
			fmt.Sprintf("%s 0 IN SRV 1 1 8080 t%d.example.", srvName, i),
			fmt.Sprintf("t%d.example. 0 IN A 10.1.%d.%d", i, i/256, i%256))
		want = append(want, fmt.Sprintf("10.1.%d.%d:8080 p0 w1", i/256, i%256))
	}
	z := newZone(t, true, records...)
	f := startFake(t, func(w mdns.ResponseWriter, r *mdns.Msg) {
		if _, ok := w.LocalAddr().(*net.UDPAddr); ok {
			m := new(mdns.Msg)
			m.SetReply(r)
			m.Truncated = true // what a server does when the answer does not fit
			_ = w.WriteMsg(m)
			return
		}
		_ = w.WriteMsg(z.reply(r))
	})
	h := run(t, newSource(t, testConfig([]string{f.addr}, srvName), nil))
	h.waitEndpoints(ClusterName(srvName), want...)
	if f.tcp.Load() == 0 {
		t.Fatal("no query came over TCP")
	}
	if h.view.status.State != sdk.Connected {
		t.Fatalf("status = %v", h.view.status)
	}
}

func TestServerFailureKeepsLastEndpoints(t *testing.T) {
	cluster := ClusterName(srvName)
	good := newZone(t, true, srvName+" 0 IN SRV 1 1 80 a.example.", "a.example. 0 IN A 10.0.0.1")
	f := startFake(t, rcode(mdns.RcodeServerFailure))
	h := run(t, newSource(t, testConfig([]string{f.addr}, srvName), nil))

	// Failing from the start: status only, no full state yet.
	h.waitStatus(sdk.Disconnected, srvName, f.addr, "SERVFAIL")
	if h.view.full {
		t.Fatal("full state sent before the name was answered")
	}
	f.set(good.handler())
	h.waitEndpoints(cluster, "10.0.0.1:80 p0 w1")
	h.waitStatus(sdk.Connected)

	// A burst of failures: the endpoints stay, the status says why.
	for _, code := range []int{mdns.RcodeServerFailure, mdns.RcodeRefused} {
		f.set(rcode(code))
		updates := h.view.updates
		h.waitStatus(sdk.Disconnected, srvName, f.addr, mdns.RcodeToString[code])
		if got := h.view.eps(cluster); !slices.Equal(got, []string{"10.0.0.1:80 p0 w1"}) {
			t.Fatalf("endpoints during failure = %q", got)
		}
		if h.view.updates != updates+1 {
			t.Fatalf("%d updates for one failure, want one status update", h.view.updates-updates)
		}
		// Recovery brings new data and Connected.
		changed := newZone(t, true, srvName+" 0 IN SRV 1 1 80 b.example.", "b.example. 0 IN A 10.0.0.2")
		f.set(changed.handler())
		h.waitFor("recovery", func(v *view) bool {
			return v.status.State == sdk.Connected && slices.Equal(v.eps(cluster), []string{"10.0.0.2:80 p0 w1"})
		})
		f.set(good.handler())
		h.waitEndpoints(cluster, "10.0.0.1:80 p0 w1")
	}
}

func TestNextServerAnswers(t *testing.T) {
	good := newZone(t, true, srvName+" 0 IN SRV 1 1 80 a.example.", "a.example. 0 IN A 10.0.0.1")
	refusing := startFake(t, rcode(mdns.RcodeRefused))
	ok := startFake(t, good.handler())
	// A closed port: nothing listens there.
	closed := func() string {
		l, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.LocalAddr().String()
	}()
	h := run(t, newSource(t, testConfig([]string{closed, refusing.addr, ok.addr}, srvName), nil))
	h.waitEndpoints(ClusterName(srvName), "10.0.0.1:80 p0 w1")
	if h.view.status.State != sdk.Connected {
		t.Fatalf("status = %+v", h.view.status)
	}
}

func TestSlowAnswerTimesOut(t *testing.T) {
	good := newZone(t, true, srvName+" 0 IN SRV 1 1 80 a.example.", "a.example. 0 IN A 10.0.0.1")
	cfg := testConfig(nil, srvName)
	cfg.Timeout = 100 * time.Millisecond
	var slow sync.WaitGroup // handlers still sleeping, waited for at cleanup
	t.Cleanup(slow.Wait)
	lateHandler := func(w mdns.ResponseWriter, r *mdns.Msg) {
		slow.Add(1)
		defer slow.Done()
		time.Sleep(3 * cfg.Timeout) // the server's slowness, not synchronisation
		_ = w.WriteMsg(good.reply(r))
	}
	f := startFake(t, good.handler())
	cfg.Servers = []string{f.addr}
	h := run(t, newSource(t, cfg, nil))
	h.waitEndpoints(ClusterName(srvName), "10.0.0.1:80 p0 w1")

	f.set(lateHandler)
	h.waitStatus(sdk.Disconnected, srvName, f.addr, "timeout")
	f.set(good.handler())
	h.waitStatus(sdk.Connected)
	if got := h.view.eps(ClusterName(srvName)); !slices.Equal(got, []string{"10.0.0.1:80 p0 w1"}) {
		t.Fatalf("endpoints = %q", got)
	}
}

func TestMalformedAnswers(t *testing.T) {
	good := newZone(t, true, srvName+" 0 IN SRV 1 1 80 a.example.", "a.example. 0 IN A 10.0.0.1")
	tests := []struct {
		name    string
		handler mdns.HandlerFunc
		reason  string
	}{
		{"garbage", func(w mdns.ResponseWriter, r *mdns.Msg) {
			b := []byte{0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff}
			b[0], b[1] = byte(r.Id>>8), byte(r.Id)
			_, _ = w.Write(b)
		}, "dns:"},
		{"another question", func(w mdns.ResponseWriter, r *mdns.Msg) {
			q := r.Copy()
			q.Question[0].Name = "other.example."
			m := good.reply(q)
			_ = w.WriteMsg(m)
		}, "answer is for another question"},
		{"truncated over tcp too", func(w mdns.ResponseWriter, r *mdns.Msg) {
			m := new(mdns.Msg)
			m.SetReply(r)
			m.Truncated = true
			_ = w.WriteMsg(m)
		}, "tcp: answer is truncated"},
		{"CNAME loop", func(w mdns.ResponseWriter, r *mdns.Msg) {
			loop := newZone(t, false, srvName+" 0 IN CNAME x.example.", "x.example. 0 IN CNAME "+srvName)
			_ = w.WriteMsg(loop.reply(r))
		}, "CNAME loop"},
		{"not implemented", rcode(mdns.RcodeNotImplemented), "response code NOTIMP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFake(t, good.handler())
			h := run(t, newSource(t, testConfig([]string{f.addr}, srvName), nil))
			h.waitEndpoints(ClusterName(srvName), "10.0.0.1:80 p0 w1")
			f.set(tt.handler)
			h.waitStatus(sdk.Disconnected, srvName, f.addr, tt.reason)
			if got := h.view.eps(ClusterName(srvName)); !slices.Equal(got, []string{"10.0.0.1:80 p0 w1"}) {
				t.Fatalf("endpoints = %q", got)
			}
		})
	}
}

func TestAuthoritativeAbsence(t *testing.T) {
	cluster := ClusterName(srvName)
	f := startFake(t, newZone(t, true, "other.example. 0 IN A 10.0.0.9").handler())
	h := run(t, newSource(t, testConfig([]string{f.addr}, srvName), nil))

	// NXDOMAIN: served, empty, and the source is connected.
	h.waitFor("empty full state", func(v *view) bool { _, ok := v.clusters[cluster]; return v.full && ok })
	if got := h.view.eps(cluster); len(got) != 0 || h.view.status.State != sdk.Connected {
		t.Fatalf("NXDOMAIN: endpoints %q, status %+v", got, h.view.status)
	}
	f.set(newZone(t, true, srvName+" 0 IN SRV 1 1 80 a.example.", "a.example. 0 IN A 10.0.0.1").handler())
	h.waitEndpoints(cluster, "10.0.0.1:80 p0 w1")

	// NODATA: the name exists, without SRV records.
	f.set(newZone(t, true, srvName+" 0 IN TXT hello").handler())
	h.waitEndpoints(cluster)
	if h.view.status.State != sdk.Connected {
		t.Fatalf("NODATA: status %+v", h.view.status)
	}
}

func TestRejectedRecordsLoggedOnce(t *testing.T) {
	cluster := ClusterName(srvName)
	f := startFake(t, newZone(t, true,
		srvName+" 0 IN SRV 1 1 80 good.example.",
		srvName+" 0 IN SRV 1 1 0 good.example.",
		srvName+" 0 IN SRV 1 1 81 missing.example.",
		srvName+" 0 IN SRV 1 1 82 twin.example.",
		"good.example. 0 IN A 10.0.0.1",
		"twin.example. 0 IN A 10.0.0.1",
		"twin.example. 0 IN A 10.0.0.2",
	).handler())
	var logs logBuffer
	h := run(t, newSource(t, testConfig([]string{f.addr}, srvName), logs.logger()))
	h.waitEndpoints(cluster, "10.0.0.1:80 p0 w1", "10.0.0.1:82 p0 w1", "10.0.0.2:82 p0 w1")

	// Let a few refreshes pass; the rejections are logged once.
	seen := f.queries.Load()
	deadline := time.Now().Add(waitTimeout)
	for f.queries.Load() < seen+10 && time.Now().Before(deadline) {
		h.quiet(20 * time.Millisecond)
	}
	out := logs.String()
	for _, want := range []string{
		`"` + srvName + ` SRV 1 1 0 good.example.: port 0"`,
		`"` + srvName + ` SRV 1 1 81 missing.example.: target missing.example. does not resolve (NXDOMAIN)"`,
	} {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("log has %d lines with %s, want 1; log:\n%s", n, want, out)
		}
	}
	if !strings.Contains(out, "msg=\"dns record rejected\" name="+srvName+" cluster="+cluster) {
		t.Errorf("rejections not logged with name and cluster; log:\n%s", out)
	}
}

func TestCNAMEs(t *testing.T) {
	tests := []struct {
		name    string
		stop    bool // the server does not chase CNAMEs itself
		records []string
		want    []string
	}{
		{
			name: "name is an alias",
			records: []string{
				srvName + " 0 IN CNAME real.example.",
				"real.example. 0 IN SRV 1 1 80 a.example.",
				"a.example. 0 IN A 10.0.0.1",
			},
			want: []string{"10.0.0.1:80 p0 w1"},
		},
		{
			name: "target is an alias, resolved by query",
			records: []string{
				srvName + " 0 IN SRV 1 1 80 alias.example.",
				"alias.example. 0 IN CNAME host.example.",
				"host.example. 0 IN A 10.0.0.2",
				"host.example. 0 IN AAAA 2001:db8::2",
			},
			want: []string{"10.0.0.2:80 p0 w1", "[2001:db8::2]:80 p0 w1"},
		},
		{
			name: "chain across queries",
			stop: true,
			records: []string{
				srvName + " 0 IN CNAME one.example.",
				"one.example. 0 IN CNAME two.example.",
				"two.example. 0 IN SRV 1 1 80 alias.example.",
				"alias.example. 0 IN CNAME host.example.",
				"host.example. 0 IN A 10.0.0.3",
			},
			want: []string{"10.0.0.3:80 p0 w1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z := newZone(t, true, tt.records...)
			h := z.handler()
			if tt.stop {
				// Answer each name on its own: a CNAME without its target.
				h = func(w mdns.ResponseWriter, r *mdns.Msg) {
					m := z.reply(r)
					if len(m.Answer) > 1 {
						if _, ok := m.Answer[0].(*mdns.CNAME); ok {
							m.Answer = m.Answer[:1]
							m.Extra = nil
						}
					}
					_ = w.WriteMsg(m)
				}
			}
			f := startFake(t, h)
			src := newSource(t, testConfig([]string{f.addr}, srvName), nil)
			a, err := src.lookup(t.Context(), src.names[0])
			if err != nil {
				t.Fatal(err)
			}
			v := view{clusters: map[string][]sdk.Endpoint{"c": a.endpoints}}
			if got := v.eps("c"); !slices.Equal(got, tt.want) {
				t.Fatalf("endpoints = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAdditionalSectionUsed(t *testing.T) {
	// The additional section holds a CNAME for one target and addresses for
	// the other: no further query is needed.
	z := newZone(t, false,
		srvName+" 0 IN SRV 1 1 80 alias.example.",
		srvName+" 0 IN SRV 2 1 80 b.example.",
	)
	extra := newZone(t, false,
		"alias.example. 0 IN CNAME host.example.",
		"host.example. 0 IN A 10.0.0.1",
		"b.example. 0 IN AAAA 2001:db8::2",
	)
	f := startFake(t, func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := z.reply(r)
		m.Extra = extra.rrs
		_ = w.WriteMsg(m)
	})
	src := newSource(t, testConfig([]string{f.addr}, srvName), nil)
	a, err := src.lookup(t.Context(), src.names[0])
	if err != nil {
		t.Fatal(err)
	}
	v := view{clusters: map[string][]sdk.Endpoint{"c": a.endpoints}}
	if got, want := v.eps("c"), []string{"10.0.0.1:80 p0 w1", "[2001:db8::2]:80 p1 w1"}; !slices.Equal(got, want) {
		t.Fatalf("endpoints = %q, want %q", got, want)
	}
	if n := f.queries.Load(); n != 1 {
		t.Fatalf("%d queries, want 1", n)
	}
	if a.endpoints[0].Hostname != "alias.example" {
		t.Errorf("hostname = %q, want the SRV target", a.endpoints[0].Hostname)
	}
}

func TestAddressRecords(t *testing.T) {
	z := newZone(t, false,
		"www.example. 0 IN CNAME host.example.",
		"host.example. 0 IN A 10.0.0.1",
		"host.example. 0 IN A 10.0.0.2",
		"host.example. 0 IN AAAA 2001:db8::1",
	)
	f := startFake(t, z.handler())
	for _, tt := range []struct {
		typ  string
		want []string
	}{
		{"A", []string{"10.0.0.1:443 p0 w0", "10.0.0.2:443 p0 w0"}},
		{"AAAA", []string{"[2001:db8::1]:443 p0 w0"}},
		{"A+AAAA", []string{"10.0.0.1:443 p0 w0", "10.0.0.2:443 p0 w0", "[2001:db8::1]:443 p0 w0"}},
	} {
		cfg := testConfig([]string{f.addr}, "www.example.")
		cfg.Type, cfg.Port = tt.typ, 443
		src := newSource(t, cfg, nil)
		a, err := src.lookup(t.Context(), src.names[0])
		if err != nil {
			t.Fatal(err)
		}
		v := view{clusters: map[string][]sdk.Endpoint{"c": a.endpoints}}
		if got := v.eps("c"); !slices.Equal(got, tt.want) {
			t.Errorf("%s: endpoints = %q, want %q", tt.typ, got, tt.want)
		}
		if a.endpoints[0].Hostname != "www.example" {
			t.Errorf("%s: hostname = %q", tt.typ, a.endpoints[0].Hostname)
		}
	}
}

func TestSearchList(t *testing.T) {
	z := newZone(t, false, "web.b.test. 0 IN A 10.0.0.1", "web.a.test. 0 IN TXT x")
	f := startFake(t, z.handler())
	r := &resolver{
		servers: []string{f.addr},
		conf:    &mdns.ClientConfig{Search: []string{"a.test.", "b.test."}, Ndots: 1},
		timeout: time.Second,
	}
	lookup := func(name string) (answer, error) {
		return r.search(t.Context(), name, func(ctx context.Context, fqdn string) (answer, error) {
			return r.lookupAddrs(ctx, fqdn, []uint16{mdns.TypeA}, 80)
		})
	}
	// web.a.test. is NODATA, web.b.test. answers.
	a, err := lookup("web")
	if err != nil || len(a.endpoints) != 1 || a.endpoints[0].Address != "10.0.0.1" {
		t.Fatalf("web: %+v, %v", a, err)
	}
	// Nowhere: authoritative absence.
	if a, err := lookup("nothing"); err != nil || a.absent != "NXDOMAIN" {
		t.Fatalf("nothing: %+v, %v", a, err)
	}
	// An absolute name ignores the search list.
	if a, err := lookup("web."); err != nil || a.absent != "NXDOMAIN" {
		t.Fatalf("web.: %+v, %v", a, err)
	}
	// A failure on an earlier name ends the search with an error.
	f.set(func(w mdns.ResponseWriter, q *mdns.Msg) {
		if strings.HasSuffix(q.Question[0].Name, ".a.test.") {
			rcode(mdns.RcodeServerFailure)(w, q)
			return
		}
		z.handler()(w, q)
	})
	if _, err := lookup("web"); err == nil || !strings.Contains(err.Error(), "web.a.test. A: "+f.addr+": server failure") {
		t.Fatalf("web with a failing first name: %v", err)
	}
}

func TestRefreshTiming(t *testing.T) {
	tests := []struct {
		name    string
		records []string
		edit    func(*Config)
		lo, hi  time.Duration // bounds of the gap between lookups
	}{
		{"TTL 0 waits min_refresh", []string{srvName + " 0 IN SRV 1 1 80 a.example.", "a.example. 0 IN A 10.0.0.1"},
			func(c *Config) { c.MinRefresh = 300 * time.Millisecond }, 300 * time.Millisecond, 400 * time.Millisecond},
		{"TTL drives refresh", []string{srvName + " 1 IN SRV 1 1 80 a.example.", "a.example. 1 IN A 10.0.0.1"},
			func(c *Config) { c.MaxRefresh = time.Hour }, time.Second, 1200 * time.Millisecond},
		{"smallest TTL wins", []string{srvName + " 60 IN SRV 1 1 80 a.example.", "a.example. 1 IN A 10.0.0.1"},
			func(c *Config) { c.MaxRefresh = time.Hour }, time.Second, 1200 * time.Millisecond},
		{"TTL clamped to max_refresh", []string{srvName + " 3600 IN SRV 1 1 80 a.example.", "a.example. 3600 IN A 10.0.0.1"},
			func(c *Config) { c.MaxRefresh = 300 * time.Millisecond }, 300 * time.Millisecond, 400 * time.Millisecond},
		{"NXDOMAIN waits min_refresh", nil,
			func(c *Config) { c.MinRefresh = 300 * time.Millisecond }, 300 * time.Millisecond, 400 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			gaps := lookupGaps(t, newZone(t, true, tt.records...).handler(), tt.edit, 2)
			// The lower bound is the point; the upper one is loose, as a
			// loaded machine may run a timer late.
			for _, g := range gaps {
				if g < tt.lo-5*time.Millisecond || g > tt.hi+time.Second {
					t.Errorf("gaps between lookups %s, want each within [%s, %s]", gaps, tt.lo, tt.hi)
				}
			}
		})
	}
}

func TestRetryBackoff(t *testing.T) {
	gaps := lookupGaps(t, rcode(mdns.RcodeServerFailure), func(c *Config) {
		c.MinRefresh = 20 * time.Millisecond
		c.MaxRetryInterval = 80 * time.Millisecond
	}, 7)
	// Doubling from min_refresh: never sooner than that.
	want := []time.Duration{20, 40, 80, 80, 80, 80, 80}
	for i, g := range gaps {
		if g < want[i]*time.Millisecond-5*time.Millisecond {
			t.Fatalf("retry gaps %s, want at least %v ms", gaps, want)
		}
	}
	// Capped: the last four take about 320ms, where doubling on would take
	// 2.4s. Compare sums, so that one late timer does not fail the test.
	var tail time.Duration
	for _, g := range gaps[3:] {
		tail += g
	}
	if tail > 1200*time.Millisecond {
		t.Fatalf("retry gaps %s: the backoff is not capped at 80ms", gaps)
	}
}

// lookupGaps runs a source for one SRV name against h and returns the n
// gaps between its first n+1 SRV queries.
func lookupGaps(t *testing.T, h mdns.HandlerFunc, edit func(*Config), n int) []time.Duration {
	t.Helper()
	var mu sync.Mutex
	var times []time.Time
	got := make(chan struct{})
	f := startFake(t, func(w mdns.ResponseWriter, r *mdns.Msg) {
		if r.Question[0].Qtype == mdns.TypeSRV {
			mu.Lock()
			times = append(times, time.Now())
			if len(times) == n+1 {
				close(got)
			}
			mu.Unlock()
		}
		h(w, r)
	})
	cfg := testConfig([]string{f.addr}, srvName)
	edit(&cfg)
	src := newSource(t, cfg, nil)
	hs := run(t, src)
	deadline := time.After(waitTimeout)
	for done := false; !done; {
		select {
		case <-got:
			done = true
		case u := <-hs.up:
			hs.apply(u)
		case <-deadline:
			t.Fatalf("fewer than %d lookups in %s", n+1, waitTimeout)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var gaps []time.Duration
	for i := 1; i <= n; i++ {
		gaps = append(gaps, times[i].Sub(times[i-1]))
	}
	return gaps
}

func TestRunStopsPromptly(t *testing.T) {
	// A server that never answers, and a long timeout: cancelling Run must
	// not wait for the query.
	asked := make(chan struct{})
	var once sync.Once
	f := startFake(t, func(mdns.ResponseWriter, *mdns.Msg) { once.Do(func() { close(asked) }) })
	cfg := testConfig(nil, srvName)
	cfg.Servers = []string{f.addr}
	cfg.Timeout = time.Minute
	src := newSource(t, cfg, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, make(chan sdk.Update)) }()
	select {
	case <-asked:
	case <-time.After(waitTimeout):
		t.Fatal("no query reached the server")
	}
	// A second Run while the first runs is refused.
	if err := src.Run(ctx, make(chan sdk.Update)); err == nil {
		t.Error("second concurrent Run returned nil")
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Run took %s to return after cancellation", d)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after cancellation")
	}
}

func TestFullStateWaitsForEveryName(t *testing.T) {
	// Two names; the second fails at first. Nothing but status is sent
	// until both have answered, then one full state with both.
	second := "_grpc._tcp.api.example."
	z := newZone(t, true,
		srvName+" 0 IN SRV 1 1 80 a.example.",
		second+" 0 IN SRV 1 1 90 a.example.",
		"a.example. 0 IN A 10.0.0.1")
	var mu sync.Mutex
	failSecond := true
	f := startFake(t, func(w mdns.ResponseWriter, r *mdns.Msg) {
		mu.Lock()
		fail := failSecond && strings.EqualFold(r.Question[0].Name, second)
		mu.Unlock()
		if fail {
			rcode(mdns.RcodeServerFailure)(w, r)
			return
		}
		z.handler()(w, r)
	})
	h := run(t, newSource(t, testConfig([]string{f.addr}, srvName, second), nil))
	h.waitStatus(sdk.Disconnected, second, f.addr)
	if h.view.full {
		t.Fatal("full state before every name answered")
	}
	mu.Lock()
	failSecond = false
	mu.Unlock()
	n := h.waitFor("full state", func(v *view) bool { return v.full })
	if n != 1 {
		t.Fatalf("%d updates to reach the full state, want 1", n)
	}
	if got := h.view.eps(ClusterName(second)); !slices.Equal(got, []string{"10.0.0.1:90 p0 w1"}) {
		t.Fatalf("second = %q", got)
	}
	if got := h.view.eps(ClusterName(srvName)); !slices.Equal(got, []string{"10.0.0.1:80 p0 w1"}) {
		t.Fatalf("first = %q", got)
	}
	if h.view.status.State != sdk.Connected {
		t.Fatalf("status = %+v", h.view.status)
	}
}

// TestFORMERRRetriedWithoutEDNS0: a server that predates EDNS0 answers
// FORMERR to a query with an OPT record (some without echoing the question);
// the query is asked again without the record, and only then.
func TestFORMERRRetriedWithoutEDNS0(t *testing.T) {
	z := newZone(t, true, srvName+" 0 IN SRV 1 1 80 a.example.", "a.example. 0 IN A 10.0.0.1")
	formerr := func(r *mdns.Msg, echo bool) *mdns.Msg {
		m := new(mdns.Msg)
		m.SetRcode(r, mdns.RcodeFormatError)
		if !echo {
			m.Question = nil
		}
		return m
	}
	// preEDNS answers FORMERR to queries with an OPT record, and from the
	// zone otherwise.
	preEDNS := func(echo bool) mdns.HandlerFunc {
		return func(w mdns.ResponseWriter, r *mdns.Msg) {
			if r.IsEdns0() != nil {
				_ = w.WriteMsg(formerr(r, echo))
				return
			}
			_ = w.WriteMsg(z.reply(r))
		}
	}
	always := func(w mdns.ResponseWriter, r *mdns.Msg) { _ = w.WriteMsg(formerr(r, true)) }
	tests := []struct {
		name        string
		handler     mdns.HandlerFunc
		edns0       int
		wantErr     string // "" when the lookup answers
		wantQueries int64
		wantPlain   int64 // queries without an OPT record
	}{
		{name: "FORMERR echoing the question", handler: preEDNS(true), edns0: 1232, wantQueries: 2, wantPlain: 1},
		{name: "FORMERR without the question", handler: preEDNS(false), edns0: 1232, wantQueries: 2, wantPlain: 1},
		{name: "EDNS0 off: asked once", handler: preEDNS(true), edns0: 0, wantQueries: 1, wantPlain: 1},
		{name: "EDNS0 understood: asked once", handler: z.handler(), edns0: 1232, wantQueries: 1, wantPlain: 0},
		{name: "FORMERR without EDNS0 too", handler: always, edns0: 1232, wantErr: "format error (FORMERR)", wantQueries: 2, wantPlain: 1},
		{name: "FORMERR with EDNS0 off is not retried", handler: always, edns0: 0, wantErr: "format error (FORMERR)", wantQueries: 1, wantPlain: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var plain atomic.Int64
			f := startFake(t, func(w mdns.ResponseWriter, r *mdns.Msg) {
				if r.IsEdns0() == nil {
					plain.Add(1)
				}
				tt.handler(w, r)
			})
			cfg := testConfig([]string{f.addr}, srvName)
			cfg.EDNS0BufferSize = tt.edns0
			src := newSource(t, cfg, nil)
			a, err := src.lookup(t.Context(), src.names[0])
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), f.addr+": "+tt.wantErr) {
					t.Fatalf("lookup error = %v, want %q", err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("lookup: %v", err)
			default:
				v := view{clusters: map[string][]sdk.Endpoint{"c": a.endpoints}}
				if got := v.eps("c"); !slices.Equal(got, []string{"10.0.0.1:80 p0 w1"}) {
					t.Fatalf("endpoints = %q", got)
				}
			}
			if got, gotPlain := f.queries.Load(), plain.Load(); got != tt.wantQueries || gotPlain != tt.wantPlain {
				t.Errorf("%d queries, %d without EDNS0; want %d, %d", got, gotPlain, tt.wantQueries, tt.wantPlain)
			}
		})
	}
}
