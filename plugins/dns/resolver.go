package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

const (
	// maxCNAMEHops bounds a CNAME chain, across queries.
	maxCNAMEHops = 8
	// targetLookups bounds the concurrent address lookups of one SRV answer.
	targetLookups = 8
)

// resolver is a stub resolver: it asks its servers in order and follows
// CNAMEs, nothing more. It holds no state between lookups but the addresses
// of server names.
type resolver struct {
	// servers are "host:port"; a host that is not an IP address is
	// resolved through hosts.
	servers []string
	hosts   *hosts
	// conf, when set, supplies the search list and ndots for names without
	// a trailing dot; when nil every name is absolute.
	conf     *mdns.ClientConfig
	timeout  time.Duration
	attempts int    // rounds through servers; less than 1 means 1
	ednsSize uint16 // 0: no EDNS0
}

// rcodeError is a response code that says nothing about the name.
type rcodeError int

func (e rcodeError) Error() string {
	switch int(e) {
	case mdns.RcodeServerFailure:
		return "server failure (SERVFAIL)"
	case mdns.RcodeRefused:
		return "query refused (REFUSED)"
	case mdns.RcodeFormatError:
		return "format error (FORMERR)"
	}
	if s, ok := mdns.RcodeToString[int(e)]; ok {
		return "response code " + s
	}
	return fmt.Sprintf("response code %d", int(e))
}

// serverError is one server's failure to answer one question.
type serverError struct {
	server string
	err    error
}

// queryError is every server's failure to answer a question. Its text names
// the question and each server, e.g.
// "_http._tcp.example.com. SRV: 10.0.0.53:53: server failure (SERVFAIL)".
type queryError struct {
	name  string
	qtype uint16
	fails []serverError
}

func (e *queryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: ", e.name, mdns.TypeToString[e.qtype])
	for i, f := range e.fails {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %s", f.server, describe(f.err))
	}
	return b.String()
}

// fail records server's failure, replacing an earlier attempt's, so that
// each server is named once.
func (e *queryError) fail(server string, err error) {
	for i := range e.fails {
		if e.fails[i].server == server {
			e.fails[i].err = err
			return
		}
	}
	e.fails = append(e.fails, serverError{server: server, err: err})
}

func (e *queryError) Unwrap() []error {
	errs := make([]error, len(e.fails))
	for i, f := range e.fails {
		errs[i] = f.err
	}
	return errs
}

// describe shortens the errors of the net package to what an operator needs.
func describe(err error) string {
	var ne net.Error
	var ue unresolvedError
	switch {
	case errors.As(err, &ue):
		return ue.Error()
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "connection refused"):
		return "unreachable (connection refused)"
	}
	return err.Error()
}

// response is a definitive answer to one question: NOERROR or NXDOMAIN.
type response struct {
	msg    *mdns.Msg
	server string
}

// query asks each server in turn, up to attempts rounds, and returns the
// first definitive answer. A server name is asked at each of its addresses.
// Every other outcome (timeout, SERVFAIL, REFUSED, a malformed or mismatched
// answer, a server name that does not resolve) moves on to the next server;
// when none answers, the error is a *queryError naming each server once,
// with its last failure.
func (r *resolver) query(ctx context.Context, name string, qtype uint16) (response, error) {
	q := new(mdns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	if r.ednsSize > 0 {
		q.SetEdns0(r.ednsSize, false)
	}
	qerr := &queryError{name: name, qtype: qtype}
	for range max(r.attempts, 1) {
		for _, server := range r.servers {
			addrs, err := r.hosts.lookup(ctx, server, r.timeout)
			if ctx.Err() != nil {
				return response{}, ctx.Err()
			}
			if err != nil {
				qerr.fail(server, err)
				continue
			}
			for _, addr := range addrs {
				label := server
				if addr != server {
					label = server + " (" + addr + ")"
				}
				m, err := r.ask(ctx, addr, q)
				if ctx.Err() != nil {
					return response{}, ctx.Err()
				}
				if err == nil {
					switch m.Rcode {
					case mdns.RcodeSuccess, mdns.RcodeNameError:
						return response{msg: m, server: label}, nil
					}
					err = rcodeError(m.Rcode)
				}
				qerr.fail(label, err)
			}
			// No address of the server answered: resolve its name again
			// next time, in case it has moved.
			r.hosts.forget(server)
		}
	}
	return response{}, qerr
}

// ask puts q to one server: over UDP, again over TCP when the answer is
// truncated, and again without EDNS0 when the server answers FORMERR to a
// query with an OPT record, as one that predates EDNS0 does (RFC 6891
// section 7).
func (r *resolver) ask(ctx context.Context, server string, q *mdns.Msg) (*mdns.Msg, error) {
	m, err := r.askOver(ctx, server, q)
	if err != nil || m.Rcode != mdns.RcodeFormatError || q.IsEdns0() == nil {
		return m, err
	}
	plain := q.Copy()
	plain.Extra = slices.DeleteFunc(plain.Extra, func(rr mdns.RR) bool { return rr.Header().Rrtype == mdns.TypeOPT })
	return r.askOver(ctx, server, plain)
}

// askOver asks over UDP, then over TCP when the answer is truncated.
func (r *resolver) askOver(ctx context.Context, server string, q *mdns.Msg) (*mdns.Msg, error) {
	m, err := r.exchange(ctx, "udp", server, q)
	if err == nil && m.Truncated {
		m, err = r.exchange(ctx, "tcp", server, q)
	}
	return m, err
}

// exchange sends q to server over network and checks that the answer is
// for q. Cancelling ctx abandons the exchange at once.
func (r *resolver) exchange(ctx context.Context, network, server string, q *mdns.Msg) (*mdns.Msg, error) {
	c := &mdns.Client{Net: network, Timeout: r.timeout}
	conn, err := c.DialContext(ctx, server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	m, _, err := c.ExchangeWithConnContext(ctx, q, conn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", network, err)
	}
	if m.Rcode == mdns.RcodeFormatError && len(m.Question) == 0 {
		return m, nil // servers that do not parse a query may not echo it
	}
	if len(m.Question) != 1 || m.Question[0].Qtype != q.Question[0].Qtype ||
		!strings.EqualFold(m.Question[0].Name, q.Question[0].Name) {
		return nil, fmt.Errorf("%s: answer is for another question", network)
	}
	if m.Truncated && network == "tcp" {
		return nil, errors.New("tcp: answer is truncated")
	}
	return m, nil
}

// lookup is the records of one type at a name, after CNAMEs.
type lookup struct {
	// rrs are the records of the asked type at the end of the CNAME chain.
	rrs []mdns.RR
	// msg is the response holding rrs, for its additional section.
	msg *mdns.Msg
	// absent is "NXDOMAIN" or "NODATA" when the name has no such records.
	absent string
	// ttl is the smallest TTL of rrs and the CNAMEs followed, or the
	// negative-caching TTL when absent.
	ttl uint32
}

// resolve looks up the qtype records of the absolute name, following CNAMEs
// within answers and, where an answer's chain stops short, with new queries.
func (r *resolver) resolve(ctx context.Context, name string, qtype uint16) (lookup, error) {
	ttl := uint32(maxTTL)
	seen := map[string]bool{}
	for range maxCNAMEHops {
		seen[mdns.CanonicalName(name)] = true
		resp, err := r.query(ctx, name, qtype)
		if err != nil {
			return lookup{}, err
		}
		m := resp.msg
		final, rrs, chainTTL, err := follow(name, qtype, m.Answer, seen)
		if err != nil {
			return lookup{}, fmt.Errorf("%s %s: %s: %w", name, mdns.TypeToString[qtype], resp.server, err)
		}
		ttl = min(ttl, chainTTL)
		switch {
		case len(rrs) > 0:
			return lookup{rrs: rrs, msg: m, ttl: ttl}, nil
		case m.Rcode == mdns.RcodeNameError:
			return lookup{msg: m, absent: "NXDOMAIN", ttl: min(ttl, negativeTTL(m))}, nil
		case final == mdns.CanonicalName(name):
			return lookup{msg: m, absent: "NODATA", ttl: min(ttl, negativeTTL(m))}, nil
		}
		name = final // the answer stops at a CNAME: ask for its target
	}
	return lookup{}, fmt.Errorf("%s %s: more than %d CNAMEs", name, mdns.TypeToString[qtype], maxCNAMEHops)
}

// maxTTL is the largest TTL RFC 2181 allows.
const maxTTL = 1<<31 - 1

// follow walks the CNAME chain from name through rrs and returns the name it
// ends at, the qtype records there and the smallest TTL on the way. A chain
// that comes back to a name in seen is an error; seen gains the names walked.
func follow(name string, qtype uint16, rrs []mdns.RR, seen map[string]bool) (string, []mdns.RR, uint32, error) {
	cur := mdns.CanonicalName(name)
	ttl := uint32(maxTTL)
	for range maxCNAMEHops + 1 {
		var out []mdns.RR
		var next string
		for _, rr := range rrs {
			h := rr.Header()
			if mdns.CanonicalName(h.Name) != cur || h.Class != mdns.ClassINET {
				continue
			}
			switch {
			case h.Rrtype == qtype:
				out = append(out, rr)
			case h.Rrtype == mdns.TypeCNAME && qtype != mdns.TypeCNAME:
				next = mdns.CanonicalName(rr.(*mdns.CNAME).Target)
				ttl = min(ttl, h.Ttl)
			}
		}
		if len(out) > 0 {
			for _, rr := range out {
				ttl = min(ttl, rr.Header().Ttl)
			}
			return cur, out, ttl, nil
		}
		if next == "" {
			return cur, nil, ttl, nil
		}
		if seen[next] {
			return "", nil, 0, fmt.Errorf("CNAME loop at %s", next)
		}
		seen[next] = true
		cur = next
	}
	return "", nil, 0, fmt.Errorf("more than %d CNAMEs", maxCNAMEHops)
}

// negativeTTL is how long an NXDOMAIN or NODATA answer may be cached
// (RFC 2308): the smaller of the SOA's TTL and its MINIMUM field. Without an
// SOA it is 0, which the refresh clamp turns into min_refresh.
func negativeTTL(m *mdns.Msg) uint32 {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*mdns.SOA); ok {
			return min(soa.Hdr.Ttl, soa.Minttl)
		}
	}
	return 0
}

// search tries fn with each name the search list makes of name, in order,
// and returns the first answer that is not an authoritative absence. An
// error ends the search: a later name's answer cannot be trusted while an
// earlier name's fate is unknown.
func (r *resolver) search(ctx context.Context, name string, fn func(ctx context.Context, fqdn string) (answer, error)) (answer, error) {
	names := []string{mdns.Fqdn(name)}
	if r.conf != nil {
		names = r.conf.NameList(name)
	}
	var last answer
	for i, n := range names {
		a, err := fn(ctx, n)
		if err != nil {
			return answer{}, err
		}
		if a.absent == "" {
			return a, nil
		}
		if i > 0 {
			a.ttl = min(a.ttl, last.ttl)
		}
		last = a
	}
	return last, nil
}

// addrs is the addresses of one host name.
type addrs struct {
	ips    []netip.Addr
	absent string // "NXDOMAIN" or "NODATA" when it has none
	ttl    uint32
}

// resolveAddrs looks up the addresses of the absolute name for each qtype
// (A, AAAA), following CNAMEs.
func (r *resolver) resolveAddrs(ctx context.Context, name string, qtypes []uint16) (addrs, error) {
	out := addrs{ttl: maxTTL}
	var absent []string
	for _, qt := range qtypes {
		l, err := r.resolve(ctx, name, qt)
		if err != nil {
			return addrs{}, err
		}
		out.ttl = min(out.ttl, l.ttl)
		if l.absent != "" {
			absent = append(absent, l.absent)
			continue
		}
		out.ips = append(out.ips, ipsOf(l.rrs)...)
	}
	if len(out.ips) == 0 {
		out.absent = "NODATA"
		if len(absent) > 0 && absent[0] == "NXDOMAIN" {
			out.absent = "NXDOMAIN"
		}
	}
	return out, nil
}

// ipsOf returns the addresses of the A and AAAA records among rrs.
func ipsOf(rrs []mdns.RR) []netip.Addr {
	var ips []netip.Addr
	for _, rr := range rrs {
		var ip net.IP
		switch rr := rr.(type) {
		case *mdns.A:
			ip = rr.A
		case *mdns.AAAA:
			ip = rr.AAAA
		default:
			continue
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			ips = append(ips, a.Unmap())
		}
	}
	return ips
}

// resolveTargets finds the addresses of SRV targets: from the response's
// answer and additional sections when the server put any there (following
// CNAMEs), otherwise by asking for A and AAAA. Up to targetLookups targets
// are looked up at once. The first error (not an absence) fails the whole.
func (r *resolver) resolveTargets(ctx context.Context, targets []string, m *mdns.Msg) (map[string]addrs, error) {
	out := make(map[string]addrs, len(targets))
	known := append(append([]mdns.RR(nil), m.Answer...), m.Extra...)
	var ask []string
	for _, t := range targets {
		a := addrs{ttl: maxTTL}
		for _, qt := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
			_, rrs, ttl, err := follow(t, qt, known, map[string]bool{})
			if err != nil || len(rrs) == 0 {
				continue
			}
			a.ttl = min(a.ttl, ttl)
			a.ips = append(a.ips, ipsOf(rrs)...)
		}
		if len(a.ips) > 0 {
			out[t] = a
			continue
		}
		ask = append(ask, t)
	}
	if len(ask) == 0 {
		return out, nil
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		sem      = make(chan struct{}, targetLookups)
	)
	for _, t := range ask {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			a, err := r.resolveAddrs(ctx, t, []uint16{mdns.TypeA, mdns.TypeAAAA})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
					cancel()
				}
				return
			}
			out[t] = a
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
