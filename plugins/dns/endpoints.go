package dns

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"

	mdns "github.com/miekg/dns"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// answer is what one lookup of a watched name found.
type answer struct {
	// endpoints are sorted by priority, address and port.
	endpoints []sdk.Endpoint
	// ttl bounds how long the answer stays current, in seconds.
	ttl uint32
	// absent is "NXDOMAIN" or "NODATA" when the name has no records: the
	// cluster is served empty.
	absent string
	// rejected describes each record (or target) left out, and why.
	rejected []string
}

// lookupSRV resolves an SRV name into endpoints.
func (r *resolver) lookupSRV(ctx context.Context, name string) (answer, error) {
	l, err := r.resolve(ctx, name, mdns.TypeSRV)
	if err != nil {
		return answer{}, err
	}
	if l.absent != "" {
		return answer{ttl: l.ttl, absent: l.absent}, nil
	}
	var srvs []*mdns.SRV
	for _, rr := range l.rrs {
		srvs = append(srvs, rr.(*mdns.SRV))
	}
	var targets []string
	for _, s := range srvs {
		if s.Target != "." && s.Port != 0 {
			targets = append(targets, mdns.CanonicalName(s.Target))
		}
	}
	slices.Sort(targets)
	targets = slices.Compact(targets)
	resolved, err := r.resolveTargets(ctx, targets, l.msg)
	if err != nil {
		return answer{}, fmt.Errorf("%s SRV: target %w", name, err)
	}
	a := buildSRV(srvs, resolved)
	a.ttl = min(a.ttl, l.ttl)
	return a, nil
}

// lookupAddrs resolves a name's address records into endpoints on port.
func (r *resolver) lookupAddrs(ctx context.Context, name string, qtypes []uint16, port uint32) (answer, error) {
	ad, err := r.resolveAddrs(ctx, name, qtypes)
	if err != nil {
		return answer{}, err
	}
	a := answer{ttl: ad.ttl, absent: ad.absent}
	host := strings.TrimSuffix(name, ".")
	seen := map[netip.Addr]bool{}
	for _, ip := range ad.ips {
		if seen[ip] {
			a.rejected = append(a.rejected, fmt.Sprintf("%s: address %s appears twice", name, ip))
			continue
		}
		seen[ip] = true
		a.endpoints = append(a.endpoints, sdk.Endpoint{Address: ip.String(), Port: port, Hostname: host})
	}
	sortEndpoints(a.endpoints)
	return a, nil
}

// srvItem is an accepted SRV record and its target's addresses.
type srvItem struct {
	srv    *mdns.SRV
	target string // canonical
	ips    []netip.Addr
}

// buildSRV turns SRV records and their targets' addresses into endpoints.
//
// Records are taken in a fixed order (priority, then weight descending, then
// target and port) so that the same answer always gives the same result,
// whatever order the server sent it in. A record is left out, and said so in
// rejected, when its port is 0, when an earlier record has the same target
// and port, or when its target has no addresses. An address and port that
// an earlier record already gave is dropped from the later record. A target
// of "." means the service is decidedly not available (RFC 2782) and is
// skipped without complaint.
//
// Priorities are renumbered densely: the lowest SRV priority value becomes
// endpoint priority 0, the next distinct value 1, and so on. Weights are
// passed through, except that weight 0 keeps its RFC 2782 meaning: where
// every record of a priority has weight 0 they share its traffic equally
// (weight 1 each), and where weight 0 sits beside positive weights the
// positive weights are multiplied by 100 (less if the level's total would
// pass 2^32-1) and weight 0 becomes 1, so a weight-0 target gets a very small
// share. Each address of a target carries the target's weight.
func buildSRV(srvs []*mdns.SRV, resolved map[string]addrs) answer {
	type record struct {
		srv    *mdns.SRV
		target string // canonical
	}
	recs := make([]record, len(srvs))
	for i, s := range srvs {
		recs[i] = record{s, mdns.CanonicalName(s.Target)}
	}
	slices.SortFunc(recs, func(a, b record) int {
		return cmp.Or(
			cmp.Compare(a.srv.Priority, b.srv.Priority),
			cmp.Compare(b.srv.Weight, a.srv.Weight),
			strings.Compare(a.target, b.target),
			cmp.Compare(a.srv.Port, b.srv.Port),
		)
	})

	a := answer{ttl: maxTTL}
	type hostPort struct {
		target string
		port   uint16
	}
	records := map[hostPort]bool{}
	owners := map[netip.AddrPort]string{}
	var items []srvItem
	for _, r := range recs {
		s, target := r.srv, r.target
		a.ttl = min(a.ttl, s.Hdr.Ttl)
		if target == "." {
			continue
		}
		reject := func(format string, args ...any) {
			rec := fmt.Sprintf("%s SRV %d %d %d %s", s.Hdr.Name, s.Priority, s.Weight, s.Port, s.Target)
			a.rejected = append(a.rejected, rec+": "+fmt.Sprintf(format, args...))
		}
		if s.Port == 0 {
			reject("port 0")
			continue
		}
		key := hostPort{target, s.Port}
		if records[key] {
			reject("duplicate target %s port %d", target, s.Port)
			continue
		}
		records[key] = true
		ad, ok := resolved[target]
		if ok {
			a.ttl = min(a.ttl, ad.ttl)
		}
		if !ok || len(ad.ips) == 0 {
			why := ad.absent
			if why == "" {
				why = "no addresses"
			}
			reject("target %s does not resolve (%s)", target, why)
			continue
		}
		it := srvItem{srv: s, target: target}
		for _, ip := range ad.ips {
			ap := netip.AddrPortFrom(ip, s.Port)
			if prev, dup := owners[ap]; dup {
				reject("address %s duplicates target %s", ap, prev)
				continue
			}
			owners[ap] = target
			it.ips = append(it.ips, ip)
		}
		if len(it.ips) > 0 {
			items = append(items, it)
		}
	}

	// Dense priorities and RFC 2782 weights, one priority level at a time.
	var level uint32
	for i := 0; i < len(items); {
		j := i
		for j < len(items) && items[j].srv.Priority == items[i].srv.Priority {
			j++
		}
		weights := levelWeights(items[i:j])
		for k, it := range items[i:j] {
			host := strings.TrimSuffix(it.target, ".")
			for _, ip := range it.ips {
				a.endpoints = append(a.endpoints, sdk.Endpoint{
					Address:  ip.String(),
					Port:     uint32(it.srv.Port),
					Weight:   weights[k],
					Priority: level,
					Hostname: host,
				})
			}
		}
		level++
		i = j
	}
	sortEndpoints(a.endpoints)
	return a
}

// weightScale is how many times more traffic a weight-1 record gets than a
// weight-0 record beside it.
const weightScale = 100

// levelWeights returns the endpoint weight of each item of one priority
// level (see buildSRV).
func levelWeights(items []srvItem) []uint32 {
	out := make([]uint32, len(items))
	var sum uint64
	zeros := false
	for _, it := range items {
		if it.srv.Weight == 0 {
			zeros = true
		}
		sum += uint64(it.srv.Weight) * uint64(len(it.ips))
	}
	scale := uint64(1)
	if zeros && sum > 0 {
		scale = weightScale
		if limit := (math.MaxUint32 - uint64(len(items))) / sum; limit < scale {
			scale = max(limit, 1)
		}
	}
	for i, it := range items {
		w := uint64(it.srv.Weight) * scale
		out[i] = uint32(min(max(w, 1), math.MaxUint32))
	}
	return out
}

// sortEndpoints orders endpoints by priority, address and port. Addresses
// compare as addresses (10.0.0.9 before 10.0.0.10), IPv4 before IPv6.
func sortEndpoints(eps []sdk.Endpoint) {
	type key struct {
		priority uint32
		addr     netip.Addr
		port     uint32
		i        int
	}
	keys := make([]key, len(eps))
	for i, e := range eps {
		a, _ := netip.ParseAddr(e.Address) // built from a netip.Addr
		keys[i] = key{e.Priority, a, e.Port, i}
	}
	slices.SortFunc(keys, func(a, b key) int {
		return cmp.Or(
			cmp.Compare(a.priority, b.priority),
			a.addr.Compare(b.addr),
			cmp.Compare(a.port, b.port),
		)
	})
	sorted := make([]sdk.Endpoint, len(eps))
	for j, k := range keys {
		sorted[j] = eps[k.i]
	}
	copy(eps, sorted)
}
