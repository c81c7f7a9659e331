package dns

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// Options carries what a Source needs besides its Config.
type Options struct {
	// Logger receives the source's logs. Default: discard.
	Logger *slog.Logger
	// ResolvConf is the resolver configuration read when Config.Servers is
	// empty, and read again when it changes. Default: /etc/resolv.conf.
	ResolvConf string
	// Resolver resolves the host names in Config.Servers. Default:
	// net.DefaultResolver, the system resolver.
	Resolver *net.Resolver

	// nameserverPort is the port of ResolvConf's nameservers, which the
	// file cannot say: "53", or a test server's.
	nameserverPort string
}

// Source watches DNS names and serves each as a cluster. Build one with New.
type Source struct {
	log *slog.Logger
	// resolver returns the resolver to use for one lookup: fixed with
	// Config.Servers, otherwise the system's as it is now.
	resolver         func() *resolver
	names            []watched
	minRefresh       time.Duration
	maxRefresh       time.Duration
	maxRetryInterval time.Duration
	// lookup resolves one watched name. It is the test seam: New sets it to
	// a real DNS lookup.
	lookup  func(ctx context.Context, w watched) (answer, error)
	running atomic.Bool
}

// watched is one configured name.
type watched struct {
	name    string // as configured
	cluster string
}

// New builds a Source from a valid cfg. It reads opts.ResolvConf when
// cfg.Servers is empty, and reaches no server (nor resolves a server name)
// until Run.
func New(cfg Config, opts Options) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ResolvConf == "" {
		opts.ResolvConf = "/etc/resolv.conf"
	}

	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.nameserverPort == "" {
		opts.nameserverPort = "53"
	}

	var current func() *resolver
	if len(cfg.Servers) > 0 {
		res := &resolver{
			hosts:    newHosts(opts.Resolver, cfg.MinRefresh),
			timeout:  cmp.Or(cfg.Timeout, defaultTimeout),
			attempts: cmp.Or(cfg.Attempts, 1),
			ednsSize: uint16(cfg.EDNS0BufferSize),
		}
		for _, s := range cfg.Servers {
			addr, _ := parseServer(s) // checked by Validate
			res.servers = append(res.servers, addr)
		}
		current = func() *resolver { return res }
	} else {
		sys, err := newSystem(opts.ResolvConf, opts.nameserverPort, cfg, opts.Logger)
		if err != nil {
			return nil, fmt.Errorf("dns: %w", err)
		}
		current = sys.current
	}

	s := &Source{
		log:              opts.Logger,
		resolver:         current,
		minRefresh:       cfg.MinRefresh,
		maxRefresh:       cfg.MaxRefresh,
		maxRetryInterval: cfg.MaxRetryInterval,
	}
	for _, n := range cfg.Names {
		s.names = append(s.names, watched{name: n.Name, cluster: n.cluster()})
	}
	qtypes, _ := parseType(cfg.Type) // checked by Validate
	if qtypes[0] == mdns.TypeSRV && cfg.Port != 0 {
		s.log.Warn("port is ignored for SRV records, which carry their own", "port", cfg.Port)
	}
	port := uint32(cfg.Port)
	s.lookup = func(ctx context.Context, w watched) (answer, error) {
		res := s.resolver()
		return res.search(ctx, w.name, func(ctx context.Context, fqdn string) (answer, error) {
			if qtypes[0] == mdns.TypeSRV {
				return res.lookupSRV(ctx, fqdn)
			}
			return res.lookupAddrs(ctx, fqdn, qtypes, port)
		})
	}
	return s, nil
}

// result is one lookup of names[i].
type result struct {
	i   int
	ans answer
	err error
}

// Run watches every name until ctx ends, then returns nil. It sends the full
// state once every name has been answered (with records or an authoritative
// absence), and from then on a change set whenever a cluster's endpoints
// change. While a name cannot be looked up its cluster keeps its last
// endpoints and the source reports Disconnected, naming the name and the
// servers; it reports Connected again once every name answers. Run never
// closes up, and a Source runs once at a time.
func (s *Source) Run(ctx context.Context, up chan<- sdk.Update) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("dns: source is already running")
	}
	defer s.running.Store(false)

	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer wg.Wait()
	defer cancel()

	results := make(chan result)
	for i := range s.names {
		wg.Go(func() { s.watch(ctx, i, results) })
	}

	st := newState(s.log, s.names)
	var lastSent time.Time
	for {
		var out chan<- sdk.Update
		next, ok := st.pending()
		if ok {
			out = up
		}
		select {
		case <-ctx.Done():
			return nil
		case r := <-results:
			st.apply(r)
			st.beat = st.fullSent && time.Since(lastSent) >= s.heartbeatEvery()
		case out <- next:
			st.sent(next)
			lastSent = time.Now()
		}
	}
}

// watch looks names[i] up again and again, as the answer's TTL or the retry
// backoff says, and hands each result to Run.
func (s *Source) watch(ctx context.Context, i int, results chan<- result) {
	failures := 0
	for {
		ans, err := s.lookup(ctx, s.names[i])
		if ctx.Err() != nil {
			return
		}
		select {
		case results <- result{i: i, ans: ans, err: err}:
		case <-ctx.Done():
			return
		}
		var d time.Duration
		if err != nil {
			failures++
			d = s.retryDelay(failures)
		} else {
			failures = 0
			d = s.refreshDelay(ans.ttl)
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// refreshDelay is the wait before the next lookup of an answer with the given
// TTL: the TTL clamped to [minRefresh, maxRefresh], plus up to 10% jitter
// that never passes maxRefresh.
func (s *Source) refreshDelay(ttl uint32) time.Duration {
	d := time.Duration(ttl) * time.Second
	d = min(max(d, s.minRefresh), s.maxRefresh)
	return jitter(d, s.maxRefresh)
}

// retryDelay is the wait after the n-th failure in a row: minRefresh doubled
// n-1 times, capped at maxRetryInterval (but never below minRefresh), plus up
// to 10% jitter that never passes the cap.
func (s *Source) retryDelay(n int) time.Duration {
	ceiling := max(s.maxRetryInterval, s.minRefresh)
	d := s.minRefresh
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return jitter(d, ceiling)
}

// jitter adds up to 10% to d, without passing ceiling, so that names with
// equal TTLs do not query in lockstep.
func jitter(d, ceiling time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return min(d+rand.N(d/10+1), max(ceiling, d))
}

// state is what Run knows and what it has told the host.
type state struct {
	log      *slog.Logger
	names    []watched
	entries  []entry
	fullSent bool
	changes  sdk.Changes // the clusters as the host has them
	status   *sdk.Status // last status sent, nil before the first
	beat     bool        // repeat the status: progress, see MaxSilence
}

type entry struct {
	answered bool           // a definitive answer has arrived
	current  []sdk.Endpoint // from the last definitive answer
	err      error          // the last lookup's error, nil when it succeeded
	absent   string         // the last answer's absence, for logs
	rejected []string       // the last answer's rejections, for logs
}

func newState(log *slog.Logger, names []watched) *state {
	return &state{log: log, names: names, entries: make([]entry, len(names))}
}

// apply records a lookup result and logs what changed.
func (st *state) apply(r result) {
	e := &st.entries[r.i]
	w := st.names[r.i]
	log := st.log.With("name", w.name, "cluster", w.cluster)
	if r.err != nil {
		if e.err == nil || e.err.Error() != r.err.Error() {
			log.Warn("dns lookup failed; keeping the last endpoints", "err", r.err)
		}
		e.err = r.err
		return
	}
	if e.err != nil {
		log.Info("dns lookup recovered")
	}
	e.err = nil
	if r.ans.absent != e.absent || !e.answered {
		if r.ans.absent != "" {
			log.Info("dns name has no records; serving no endpoints", "rcode", r.ans.absent)
		}
	}
	e.absent = r.ans.absent
	if !slices.Equal(r.ans.rejected, e.rejected) {
		for _, msg := range r.ans.rejected {
			log.Warn("dns record rejected", "err", msg)
		}
	}
	e.rejected = r.ans.rejected
	e.answered = true
	e.current = r.ans.endpoints
}

// wantStatus is the status the host should see now.
func (st *state) wantStatus() sdk.Status {
	var reasons []string
	for i, e := range st.entries {
		if e.err == nil {
			continue
		}
		// Errors name the question asked; prefix the watched name when the
		// question was another (a target, a CNAME's target).
		msg, name := e.err.Error(), st.names[i].name
		if !strings.HasPrefix(strings.ToLower(msg), strings.ToLower(strings.TrimSuffix(name, "."))) {
			msg = name + ": " + msg
		}
		reasons = append(reasons, msg)
	}
	if len(reasons) == 0 {
		return sdk.Status{State: sdk.Connected}
	}
	return sdk.Status{State: sdk.Disconnected, Reason: "dns lookup failed: " + strings.Join(reasons, "; ")}
}

// pending builds the update the host is owed, if any.
func (st *state) pending() (sdk.Update, bool) {
	var u sdk.Update
	status := st.wantStatus()
	if !st.fullSent {
		all := true
		for _, e := range st.entries {
			all = all && e.answered
		}
		if all {
			u.Full = true
			u.Clusters = make([]sdk.Cluster, 0, len(st.entries))
			for i, e := range st.entries {
				u.Clusters = append(u.Clusters, sdk.Cluster{Name: st.names[i].cluster, Endpoints: e.current})
			}
		} else if status.State == sdk.Connected {
			return u, false // still waiting for first answers; nothing to say
		}
	} else {
		for i, e := range st.entries {
			c := sdk.Cluster{Name: st.names[i].cluster, Endpoints: e.current}
			st.changes.Change(&u, c.Name, &c)
		}
	}
	slices.SortFunc(u.Clusters, func(a, b sdk.Cluster) int { return strings.Compare(a.Name, b.Name) })
	if st.status == nil || *st.status != status || st.beat {
		u.Status = &status
	}
	return u, u.Full || len(u.Clusters) > 0 || u.Status != nil
}

// sent records that the host has u.
func (st *state) sent(u sdk.Update) {
	if u.Full {
		st.fullSent = true
	}
	st.changes.Sent(u)
	if u.Status != nil {
		s := *u.Status
		st.status = &s
	}
	st.beat = false
}

// Interface guard.
var _ sdk.Source = (*Source)(nil)
