// Package workload is the benchmark's synthetic service-discovery state:
// clusters of endpoints and the operations that change it (endpoint flaps,
// rollouts, full pushes, clusters added and removed).
//
// The driver and the synthetic source plugin each hold a Model and apply the
// same Ops to it, so both agree on every endpoint without shipping endpoints
// between them: the plugin builds its updates the way a real source would,
// and the driver builds the same clusters for the systems fed directly.
//
// Every cluster carries a marker naming the last Op that changed it: the
// hostname of its first endpoint is Marker(seq, index). Clients look for
// markers to know when they have a change.
package workload

import (
	"bytes"
	"fmt"
	"math"
	"net/netip"
	"strconv"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/sdk"
)

// Ref identifies a cluster. Regular clusters are subscribed to by a share
// of the clients; a solo cluster only by its owner, so that a change to it
// concerns exactly one client however many subscriptions there are overall.
type Ref struct {
	Index int32
	// Owner is the one client subscribed to a solo cluster, or -1.
	Owner int32
}

// Regular returns the Ref of regular cluster i.
func Regular(i int32) Ref { return Ref{Index: i, Owner: -1} }

// Name is the cluster's name: c0000042 for a regular cluster, s0000042-7
// for a solo cluster owned by client 7.
func (r Ref) Name() string {
	var b [24]byte
	out := b[:0]
	if r.Owner < 0 {
		out = append(out, 'c')
	} else {
		out = append(out, 's')
	}
	out = appendPadded(out, uint32(r.Index), 7)
	if r.Owner >= 0 {
		out = append(out, '-')
		out = strconv.AppendUint(out, uint64(r.Owner), 10)
	}
	return string(out)
}

func appendPadded(b []byte, v uint32, width int) []byte {
	var d [10]byte
	s := strconv.AppendUint(d[:0], uint64(v), 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// ParseName is the inverse of Ref.Name.
func ParseName(name []byte) (Ref, bool) {
	if len(name) < 2 || (name[0] != 'c' && name[0] != 's') {
		return Ref{}, false
	}
	idx, rest, ok := parseUint(name[1:])
	if !ok {
		return Ref{}, false
	}
	r := Ref{Index: int32(idx), Owner: -1}
	if name[0] == 'c' {
		return r, len(rest) == 0
	}
	if len(rest) < 2 || rest[0] != '-' {
		return Ref{}, false
	}
	owner, rest, ok := parseUint(rest[1:])
	if !ok || len(rest) != 0 {
		return Ref{}, false
	}
	r.Owner = int32(owner)
	return r, true
}

// parseUint reads the decimal number at the start of b; it fails on none
// and on one that does not fit 32 bits.
func parseUint(b []byte) (v uint32, rest []byte, ok bool) {
	var x uint64
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		x = x*10 + uint64(b[i]-'0')
		if x > math.MaxUint32 {
			return 0, b[i:], false
		}
		i++
	}
	return uint32(x), b[i:], i > 0
}

// Subscribed reports whether client subscribes to the endpoints of r:
// always for its own solo clusters, never for another's, and for a regular
// cluster when a hash of (client, index) falls within shareMilli/1000.
func Subscribed(client int32, r Ref, shareMilli int) bool {
	if r.Owner >= 0 {
		return r.Owner == client
	}
	if shareMilli >= 1000 {
		return true
	}
	x := uint64(uint32(client))<<32 | uint64(uint32(r.Index))
	// splitmix64 finaliser: deterministic and well spread.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return int(x%1000) < shareMilli
}

// markerPrefix starts every marker.
const markerPrefix = "xbm-"

// Marker is the hostname of a cluster's first endpoint after Op seq
// changed it.
func Marker(seq uint32, index int32) string {
	var b [32]byte
	out := append(b[:0], markerPrefix...)
	out = strconv.AppendUint(out, uint64(seq), 10)
	out = append(out, '-')
	out = strconv.AppendUint(out, uint64(uint32(index)), 10)
	return string(out)
}

// FindMarkers calls fn for every marker in b: a serialized resource, a
// response, or its JSON form.
func FindMarkers(b []byte, fn func(seq uint32, index int32)) {
	for {
		i := bytes.Index(b, []byte(markerPrefix))
		if i < 0 {
			return
		}
		b = b[i+len(markerPrefix):]
		seq, rest, ok := parseUint(b)
		if !ok || len(rest) < 2 || rest[0] != '-' {
			continue
		}
		idx, rest, ok := parseUint(rest[1:])
		if !ok {
			continue
		}
		fn(seq, int32(idx))
		b = rest
	}
}

// OpKind says what an Op does.
type OpKind uint8

const (
	// Init creates the initial clusters; the source sends a full state.
	Init OpKind = iota + 1
	// Full changes every endpoint of every cluster (new ports); the source
	// sends a full state.
	Full
	// Push changes every endpoint of Clusters (all when empty); the source
	// sends a change set.
	Push
	// Flap toggles the health of endpoint Endpoint of Clusters[0].
	Flap
	// Rollout replaces half the endpoints (new addresses) of Clusters.
	Rollout
	// Add creates Clusters.
	Add
	// Remove deletes Clusters.
	Remove
)

func (k OpKind) String() string {
	switch k {
	case Init:
		return "init"
	case Full:
		return "full"
	case Push:
		return "push"
	case Flap:
		return "flap"
	case Rollout:
		return "rollout"
	case Add:
		return "add"
	case Remove:
		return "remove"
	}
	return fmt.Sprintf("OpKind(%d)", int(k))
}

// Op is one change of the source. Seq is its marker number: every cluster
// it changes or creates carries Marker(Seq, index) afterwards.
type Op struct {
	Kind OpKind
	Seq  uint32
	// Endpoints is the number of endpoints of each cluster created (Init,
	// Add).
	Endpoints int32
	// Clusters are the clusters concerned; empty means all for Push and
	// Full.
	Clusters []Ref
	// Endpoint is the endpoint a Flap toggles.
	Endpoint int32
}

// cluster is one cluster's state; its endpoints are derived from it.
type cluster struct {
	exists    bool
	owner     int32
	endpoints int32
	// epoch moves every port (Push, Full).
	epoch uint32
	// gen moves the addresses of the odd endpoints (Rollout).
	gen uint32
	// down is the unhealthy endpoint, or -1.
	down int32
	seq  uint32
}

// Model is the state of the synthetic source. The zero value is empty and
// ready to use. A Model is not safe for concurrent use.
type Model struct {
	clusters []cluster
	count    int
	addrs    []string
}

// Len is the number of clusters.
func (m *Model) Len() int { return m.count }

// Refs returns every cluster, by index.
func (m *Model) Refs() []Ref {
	out := make([]Ref, 0, m.count)
	for i := range m.clusters {
		if c := &m.clusters[i]; c.exists {
			out = append(out, Ref{Index: int32(i), Owner: c.owner})
		}
	}
	return out
}

// Has reports whether cluster index exists.
func (m *Model) Has(index int32) bool {
	return index >= 0 && int(index) < len(m.clusters) && m.clusters[index].exists
}

// MaxIndex is one more than the largest index ever used.
func (m *Model) MaxIndex() int { return len(m.clusters) }

// Apply applies op and returns the clusters it changed or created and
// those it removed. Ops naming clusters that do not exist (or, for Init
// and Add, that do) skip them.
func (m *Model) Apply(op Op) (changed, removed []Ref) {
	all := func() []Ref {
		if len(op.Clusters) > 0 {
			return op.Clusters
		}
		return m.Refs()
	}
	switch op.Kind {
	case Init, Add:
		if op.Kind == Init {
			m.clusters, m.count = nil, 0
		}
		for _, r := range op.Clusters {
			if r.Index < 0 {
				continue
			}
			for int(r.Index) >= len(m.clusters) {
				m.clusters = append(m.clusters, cluster{})
			}
			c := &m.clusters[r.Index]
			if c.exists {
				continue
			}
			*c = cluster{exists: true, owner: r.Owner, endpoints: max(op.Endpoints, 1), down: -1, seq: op.Seq}
			m.count++
			changed = append(changed, r)
		}
	case Full, Push:
		for _, r := range all() {
			if c := m.get(r); c != nil {
				c.epoch++
				c.seq = op.Seq
				changed = append(changed, Ref{Index: r.Index, Owner: c.owner})
			}
		}
	case Flap:
		for _, r := range op.Clusters {
			if c := m.get(r); c != nil {
				j := op.Endpoint
				if j < 0 || j >= c.endpoints {
					j = c.endpoints - 1
				}
				if c.down == j {
					c.down = -1
				} else {
					c.down = j
				}
				c.seq = op.Seq
				changed = append(changed, Ref{Index: r.Index, Owner: c.owner})
			}
		}
	case Rollout:
		for _, r := range op.Clusters {
			if c := m.get(r); c != nil {
				c.gen++
				c.seq = op.Seq
				changed = append(changed, Ref{Index: r.Index, Owner: c.owner})
			}
		}
	case Remove:
		for _, r := range op.Clusters {
			if c := m.get(r); c != nil {
				removed = append(removed, Ref{Index: r.Index, Owner: c.owner})
				*c = cluster{}
				m.count--
			}
		}
	}
	return changed, removed
}

func (m *Model) get(r Ref) *cluster {
	if !m.Has(r.Index) {
		return nil
	}
	return &m.clusters[r.Index]
}

// Seq returns the marker number cluster index carries, or 0.
func (m *Model) Seq(index int32) uint32 {
	if !m.Has(index) {
		return 0
	}
	return m.clusters[index].seq
}

// zone spreads endpoints over three localities.
func zone(j int) string {
	switch j % 3 {
	case 0:
		return "z0"
	case 1:
		return "z1"
	}
	return "z2"
}

// addr returns the n-th address, 10.0.0.0 + n, as a string; strings are
// built once and shared.
func (m *Model) addr(n uint32) string {
	if n < 1<<20 {
		for uint32(len(m.addrs)) <= n {
			k := uint32(len(m.addrs))
			m.addrs = append(m.addrs, ip(k))
		}
		return m.addrs[n]
	}
	return ip(n)
}

func ip(n uint32) string {
	return netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}).String()
}

// Endpoints returns the endpoints of cluster r, or nil when it does not
// exist.
func (m *Model) Endpoints(r Ref) []sdk.Endpoint {
	c := m.get(r)
	if c == nil {
		return nil
	}
	eps := make([]sdk.Endpoint, c.endpoints)
	for j := range eps {
		n := uint32(j)
		if j%2 == 1 {
			// Odd endpoints move with each rollout: half the set replaced.
			n += c.gen * uint32(c.endpoints)
		}
		h := sdk.Healthy
		if int32(j) == c.down {
			h = sdk.Unhealthy
		}
		eps[j] = sdk.Endpoint{
			Address:  m.addr(n),
			Port:     8000 + c.epoch%50000,
			Health:   h,
			Locality: sdk.Locality{Region: "r1", Zone: zone(j)},
		}
	}
	eps[0].Hostname = Marker(c.seq, r.Index)
	return eps
}

// Cluster returns cluster r as a source sends it.
func (m *Model) Cluster(r Ref) sdk.Cluster {
	return sdk.Cluster{Name: m.ref(r).Name(), Endpoints: m.Endpoints(r)}
}

// ref fills in r's owner from the model.
func (m *Model) ref(r Ref) Ref {
	if c := m.get(r); c != nil {
		r.Owner = c.owner
	}
	return r
}

// Aggregated returns cluster r as the aggregator would hand it to the
// translator: the same resources follow, byte for byte.
func (m *Model) Aggregated(r Ref) *aggregator.Cluster {
	eps := m.Endpoints(r)
	source := []string{SourceName}
	out := &aggregator.Cluster{Name: m.ref(r).Name(), Sources: source, Endpoints: make([]aggregator.Endpoint, len(eps))}
	for i, e := range eps {
		out.Endpoints[i] = aggregator.Endpoint{Endpoint: e, Sources: source}
	}
	return out
}

// SourceName is the name of the synthetic source.
const SourceName = "bench"

// Regulars returns regular clusters [from, to).
func Regulars(from, to int32) []Ref {
	out := make([]Ref, 0, max(to-from, 0))
	for i := from; i < to; i++ {
		out = append(out, Regular(i))
	}
	return out
}
