package dns

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"go.uber.org/goleak"

	"github.com/xdsbridge/xdsbridge/sdk"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitTimeout bounds every wait for an update.
const waitTimeout = 10 * time.Second

// view is the host's picture of a source, built from its updates.
type view struct {
	clusters map[string][]sdk.Endpoint
	status   sdk.Status
	full     bool // the first full state has arrived
	updates  int
}

// eps renders a cluster's endpoints as "address:port p<priority> w<weight>",
// in the order sent.
func (v *view) eps(cluster string) []string {
	var out []string
	for _, e := range v.clusters[cluster] {
		out = append(out, fmt.Sprintf("%s p%d w%d", net.JoinHostPort(e.Address, fmt.Sprint(e.Port)), e.Priority, e.Weight))
	}
	return out
}

func (v *view) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "full=%v status=%s %q", v.full, v.status.State, v.status.Reason)
	names := make([]string, 0, len(v.clusters))
	for n := range v.clusters {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&b, "\n  %s: %q", n, v.eps(n))
	}
	return b.String()
}

// harness runs a Source as the host would and checks the Run contract on
// every update it reads.
type harness struct {
	t      *testing.T
	up     chan sdk.Update
	view   view
	times  []time.Time // when each update arrived
	cancel context.CancelFunc
	done   chan error
}

// run starts src.Run; the test's cleanup stops it and checks it returned nil.
func run(t *testing.T, src *Source) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	h := &harness{t: t, up: make(chan sdk.Update), cancel: cancel, done: make(chan error, 1)}
	h.view.clusters = map[string][]sdk.Endpoint{}
	go func() { h.done <- src.Run(ctx, h.up) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return within %s of cancellation", waitTimeout)
		}
	})
	return h
}

// apply folds u into the view, failing on contract violations.
func (h *harness) apply(u sdk.Update) {
	h.t.Helper()
	h.view.updates++
	h.times = append(h.times, time.Now())
	if !h.view.full && !u.Full && (len(u.Clusters) > 0 || len(u.RemovedClusters) > 0) {
		h.t.Fatalf("change set before the first full state: %+v", u)
	}
	if !u.Full && len(u.Clusters) == 0 && len(u.RemovedClusters) == 0 && u.Status == nil {
		h.t.Fatalf("empty update")
	}
	if u.Full {
		h.view.full = true
		h.view.clusters = map[string][]sdk.Endpoint{}
	}
	for _, c := range u.Clusters {
		h.view.clusters[c.Name] = c.Endpoints
	}
	for _, n := range u.RemovedClusters {
		delete(h.view.clusters, n)
	}
	if u.Status != nil {
		h.view.status = *u.Status
	}
}

// waitFor reads updates until cond holds for the view, failing the test if
// it does not within waitTimeout. It returns the number of updates read.
func (h *harness) waitFor(what string, cond func(v *view) bool) int {
	h.t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	n := 0
	for !cond(&h.view) {
		select {
		case u := <-h.up:
			h.apply(u)
			n++
		case err := <-h.done:
			h.t.Fatalf("waiting for %s: Run returned %v", what, err)
		case <-deadline.C:
			h.t.Fatalf("waiting for %s: nothing after %s; view: %s", what, waitTimeout, &h.view)
		}
	}
	return n
}

// quiet fails if an update arrives within d.
// A status repeated unchanged is a heartbeat (see Source.MaxSilence), not
// an update.
func (h *harness) quiet(d time.Duration) {
	h.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case u := <-h.up:
			if !u.Full && len(u.Clusters)+len(u.RemovedClusters) == 0 && u.Status != nil && *u.Status == h.view.status {
				h.apply(u)
				continue
			}
			h.t.Fatalf("unexpected update %+v", u)
		case <-deadline:
			return
		}
	}
}

// waitEndpoints waits until cluster's endpoints render as want.
func (h *harness) waitEndpoints(cluster string, want ...string) {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("%s = %q", cluster, want), func(v *view) bool {
		got, ok := v.clusters[cluster]
		return v.full && ok && slices.Equal(v.eps(cluster), want) && (len(got) > 0 || len(want) == 0)
	})
}

// waitStatus waits until the source reports state with a reason containing
// every one of parts.
func (h *harness) waitStatus(state sdk.State, parts ...string) {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("status %s %q", state, parts), func(v *view) bool {
		if v.status.State != state {
			return false
		}
		for _, p := range parts {
			if !strings.Contains(v.status.Reason, p) {
				return false
			}
		}
		return true
	})
}

// testConfig is a Config for tests: fast refresh, short timeout.
func testConfig(servers []string, names ...string) Config {
	cfg := DefaultConfig()
	cfg.Servers = servers
	cfg.Timeout = 500 * time.Millisecond
	cfg.MinRefresh = 50 * time.Millisecond
	cfg.MaxRefresh = time.Second
	cfg.MaxRetryInterval = 200 * time.Millisecond
	for _, n := range names {
		cfg.Names = append(cfg.Names, Name{Name: n})
	}
	return cfg
}

func newSource(t *testing.T, cfg Config, log *slog.Logger) *Source {
	t.Helper()
	s, err := New(cfg, Options{Logger: log})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// logBuffer collects a logger's output for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// fake is an in-process DNS server on one port of 127.0.0.1, over UDP and
// TCP, for what a real server cannot be made to do on demand.
type fake struct {
	addr    string
	handler atomic.Pointer[mdns.HandlerFunc]
	queries atomic.Int64
	tcp     atomic.Int64 // queries that came over TCP
}

// startFake starts a fake server answering with h (changeable with set).
func startFake(t *testing.T, h mdns.HandlerFunc) *fake {
	t.Helper()
	f := &fake{}
	f.set(h)
	var (
		pc  net.PacketConn
		l   net.Listener
		err error
	)
	for range 10 {
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			continue
		}
		if pc, err = net.ListenPacket("udp", l.Addr().String()); err == nil {
			break
		}
		l.Close()
	}
	if err != nil {
		t.Fatalf("fake server: %v", err)
	}
	f.addr = l.Addr().String()
	handler := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		f.queries.Add(1)
		if _, ok := w.LocalAddr().(*net.TCPAddr); ok {
			f.tcp.Add(1)
		}
		(*f.handler.Load())(w, r)
	})
	servers := []*mdns.Server{
		{PacketConn: pc, Handler: handler},
		{Listener: l, Handler: handler},
	}
	var wg sync.WaitGroup
	for _, s := range servers {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		wg.Go(func() { _ = s.ActivateAndServe() })
		select {
		case <-started:
		case <-time.After(waitTimeout):
			t.Fatal("fake server did not start")
		}
	}
	t.Cleanup(func() {
		for _, s := range servers {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			_ = s.ShutdownContext(ctx)
			cancel()
		}
		wg.Wait()
	})
	return f
}

func (f *fake) set(h mdns.HandlerFunc) { f.handler.Store(&h) }

// zone answers from a fixed set of records, the way an authoritative server
// does: CNAMEs at the name are followed within the zone, NXDOMAIN when the
// name has no records, NODATA (with an SOA) when it has none of the type.
// With extra, the addresses of SRV targets go in the additional section.
type zone struct {
	rrs   []mdns.RR
	extra bool
}

func newZone(t *testing.T, extra bool, records ...string) *zone {
	t.Helper()
	z := &zone{extra: extra}
	for _, r := range records {
		rr, err := mdns.NewRR(r)
		if err != nil {
			t.Fatalf("record %q: %v", r, err)
		}
		z.rrs = append(z.rrs, rr)
	}
	return z
}

func (z *zone) at(name string, qtype uint16) (rrs []mdns.RR, exists bool) {
	for _, rr := range z.rrs {
		h := rr.Header()
		if !strings.EqualFold(h.Name, name) {
			continue
		}
		exists = true
		if h.Rrtype == qtype {
			rrs = append(rrs, rr)
		}
	}
	return rrs, exists
}

// reply builds the answer to r.
func (z *zone) reply(r *mdns.Msg) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	q := r.Question[0]
	name := q.Name
	for range 10 {
		rrs, exists := z.at(name, q.Qtype)
		if len(rrs) > 0 {
			m.Answer = append(m.Answer, rrs...)
			break
		}
		if cn, _ := z.at(name, mdns.TypeCNAME); len(cn) > 0 {
			m.Answer = append(m.Answer, cn...)
			name = cn[0].(*mdns.CNAME).Target
			continue
		}
		if !exists {
			m.Rcode = mdns.RcodeNameError
		}
		soa, _ := mdns.NewRR(". 0 IN SOA ns. host. 1 60 60 60 0")
		m.Ns = append(m.Ns, soa)
		break
	}
	if z.extra {
		for _, rr := range m.Answer {
			if srv, ok := rr.(*mdns.SRV); ok {
				a, _ := z.at(srv.Target, mdns.TypeA)
				aaaa, _ := z.at(srv.Target, mdns.TypeAAAA)
				m.Extra = append(m.Extra, a...)
				m.Extra = append(m.Extra, aaaa...)
			}
		}
	}
	return m
}

func (z *zone) handler() mdns.HandlerFunc {
	return func(w mdns.ResponseWriter, r *mdns.Msg) { _ = w.WriteMsg(z.reply(r)) }
}

// rcode answers every query with rcode.
func rcode(code int) mdns.HandlerFunc {
	return func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetRcode(r, code)
		_ = w.WriteMsg(m)
	}
}
