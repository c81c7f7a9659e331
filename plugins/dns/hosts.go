package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// hosts resolves the names of servers given as "host:port" with the system
// resolver, and keeps each name's addresses for ttl or until no address of
// it answers a query (forget), whichever comes first. A nil *hosts resolves
// nothing: every server is taken as an address.
type hosts struct {
	resolver *net.Resolver
	ttl      time.Duration

	mu      sync.Mutex
	entries map[string]*hostEntry // by "host:port"
}

type hostEntry struct {
	sem     chan struct{} // held while the name is being resolved
	addrs   []string      // "ip:port"; guarded by hosts.mu
	expires time.Time     // guarded by hosts.mu
}

func newHosts(r *net.Resolver, ttl time.Duration) *hosts {
	return &hosts{resolver: r, ttl: ttl, entries: map[string]*hostEntry{}}
}

// unresolvedError is a server name that the system resolver did not resolve.
type unresolvedError struct {
	err error
}

func (e unresolvedError) Error() string { return "server name does not resolve: " + e.err.Error() }
func (e unresolvedError) Unwrap() error { return e.err }

// lookup returns the addresses ("ip:port") to ask for server: server itself
// when its host is an IP address, otherwise the addresses its name has now,
// resolved within timeout. Concurrent lookups of one name share one
// resolution.
func (h *hosts) lookup(ctx context.Context, server string, timeout time.Duration) ([]string, error) {
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddr(host); err == nil || h == nil {
		return []string{server}, nil
	}

	h.mu.Lock()
	e := h.entries[server]
	if e == nil {
		e = &hostEntry{sem: make(chan struct{}, 1)}
		h.entries[server] = e
	}
	h.mu.Unlock()
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-e.sem }()

	h.mu.Lock()
	addrs, fresh := e.addrs, time.Now().Before(e.expires)
	h.mu.Unlock()
	if fresh {
		return addrs, nil
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ips, err := h.resolver.LookupNetIP(ctx, "ip", host)
	if err == nil && len(ips) == 0 {
		err = fmt.Errorf("lookup %s: no addresses", host)
	}
	if err != nil {
		return nil, unresolvedError{err: err}
	}
	addrs = make([]string, len(ips))
	for i, ip := range ips {
		addrs[i] = net.JoinHostPort(ip.Unmap().String(), port)
	}
	h.mu.Lock()
	e.addrs, e.expires = addrs, time.Now().Add(h.ttl)
	h.mu.Unlock()
	return addrs, nil
}

// forget makes the next lookup of server resolve its name again.
func (h *hosts) forget(server string) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.entries[server]; e != nil {
		e.expires = time.Time{}
	}
}
