// Package conns is the registry of xDS clients: every gRPC connection with
// its streams, every REST client, and what each has subscribed to, been
// sent, accepted (ACK) and rejected (NACK).
//
// The xDS server feeds it: a gRPC stats handler opens and closes connections
// (so a connection without a stream is tracked too), go-control-plane's
// callbacks open and close streams and report requests and responses, and
// the REST handler reports fetches. Nothing about a client is kept after it
// disconnects, except a bounded list of recent disconnects with the reason.
// A REST client has no connection to lose: it is forgotten once it has not
// polled for Options.RESTIdle.
//
// Every method is safe for concurrent use; methods on a nil *Conn, *Stream
// or *Fetch do nothing, so that a caller need not check whether a client was
// tracked.
package conns

import (
	"context"
	"net"
	"sync"
	"time"
)

// Options configure a Registry.
type Options struct {
	// History is how many recent disconnects are kept; 0 keeps none.
	History int
	// RESTIdle is how long a REST client is remembered after its last
	// request. 0 forgets it at the next sweep.
	RESTIdle time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Reason says why a client went away.
type Reason string

// Disconnect reasons.
const (
	// ReasonClientClose: the client closed or reset the connection.
	ReasonClientClose Reason = "client close"
	// ReasonKeepalive: the client stopped answering — no HTTP/2 ping answer
	// within the keepalive timeout, or the kernel gave up on unacknowledged
	// data or keepalive probes.
	ReasonKeepalive Reason = "keepalive timeout"
	// ReasonShutdown: the server was shutting down.
	ReasonShutdown Reason = "server shutdown"
	// ReasonServerClose: the server closed the connection for another
	// reason, such as a protocol error or too many pings.
	ReasonServerClose Reason = "server close"
	// ReasonConnError: reading from or writing to the connection failed.
	ReasonConnError Reason = "connection error"
	// ReasonRESTIdle: a REST client sent no request for RESTIdle.
	ReasonRESTIdle Reason = "rest idle"
)

// Reasons lists every Reason, for metrics that want them all present.
func Reasons() []Reason {
	return []Reason{ReasonClientClose, ReasonKeepalive, ReasonShutdown, ReasonServerClose, ReasonConnError, ReasonRESTIdle}
}

// Registry holds every connected client. Create it with New.
type Registry struct {
	opts Options

	mu      sync.Mutex
	nextID  uint64
	conns   map[uint64]*Conn
	rest    map[string]*REST
	history []Disconnect // ring of len opts.History
	histLen int
	histPos int // next slot to write
}

// New returns an empty Registry.
func New(opts Options) *Registry {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.History < 0 {
		opts.History = 0
	}
	return &Registry{
		opts:    opts,
		conns:   map[uint64]*Conn{},
		rest:    map[string]*REST{},
		history: make([]Disconnect, opts.History),
	}
}

// Run forgets idle REST clients until ctx ends.
func (r *Registry) Run(ctx context.Context) error {
	every := min(max(r.opts.RESTIdle/4, 100*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.Sweep()
		}
	}
}

// Disconnect is one entry of the recent-disconnect history.
type Disconnect struct {
	// Connection is the connection's id; 0 for a REST client.
	Connection uint64 `json:"connection,omitempty"`
	Transport  string `json:"transport"` // grpc | rest
	Peer       string `json:"peer"`
	// Nodes are the nodes that had streams on the connection (at most
	// eight).
	Nodes          []NodeRef `json:"nodes"`
	ConnectedSince time.Time `json:"connected_since"`
	DisconnectedAt time.Time `json:"disconnected_at"`
	Reason         Reason    `json:"reason"`
	Detail         string    `json:"detail,omitempty"`
}

// NodeRef names a node in the history.
type NodeRef struct {
	ID      string `json:"id"`
	Cluster string `json:"cluster,omitempty"`
}

func (r *Registry) remember(d Disconnect) {
	if len(r.history) == 0 {
		return
	}
	r.history[r.histPos] = d
	r.histPos = (r.histPos + 1) % len(r.history)
	r.histLen = min(r.histLen+1, len(r.history))
}

// recent returns the history, newest first.
func (r *Registry) recent() []Disconnect {
	out := make([]Disconnect, 0, r.histLen)
	for i := 1; i <= r.histLen; i++ {
		out = append(out, r.history[(r.histPos-i+len(r.history))%len(r.history)])
	}
	return out
}

// Conn is one gRPC connection.
type Conn struct {
	r     *Registry
	id    uint64
	peer  string
	local string
	since time.Time

	// Guarded by r.mu.
	lastRequest time.Time
	requests    uint64
	responses   uint64
	bytes       uint64
	rateLimited uint64
	streams     map[*Stream]struct{}
	// nodes are the distinct nodes the connection's streams named, first
	// first, at most maxNodesPerConn.
	nodes  []*Node
	closed bool
}

// maxNodesPerConn bounds the nodes a connection remembers for its
// disconnect record; a client may name any number.
const maxNodesPerConn = 8

func (c *Conn) noteNodeLocked(n *Node) {
	if len(c.nodes) >= maxNodesPerConn {
		return
	}
	for _, m := range c.nodes {
		if m.ID == n.ID {
			return
		}
	}
	c.nodes = append(c.nodes, n)
}

// Open registers a new connection from peer to local.
func (r *Registry) Open(peer, local net.Addr) *Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nextID++
	c := &Conn{r: r, id: r.nextID, peer: addrString(peer), local: addrString(local), since: r.opts.Now(), streams: map[*Stream]struct{}{}}
	r.conns[c.id] = c
	return c
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// ID returns the connection's id, unique for the registry's lifetime.
func (c *Conn) ID() uint64 {
	if c == nil {
		return 0
	}
	return c.id
}

// Close forgets the connection and its streams and records why it ended.
// Closing twice does nothing.
func (c *Conn) Close(reason Reason, detail string) {
	if c == nil {
		return
	}
	r := c.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	delete(r.conns, c.id)
	d := Disconnect{Connection: c.id, Transport: "grpc", Peer: c.peer, ConnectedSince: c.since,
		DisconnectedAt: r.opts.Now(), Reason: reason, Detail: detail}
	for s := range c.streams {
		s.closed = true
	}
	for _, n := range c.nodes {
		d.Nodes = append(d.Nodes, NodeRef{ID: n.ID, Cluster: n.Cluster})
	}
	sortNodeRefs(d.Nodes)
	c.streams = nil
	r.remember(d)
}

// RateLimited counts a request of the connection that was delayed by the
// rate limit.
func (c *Conn) RateLimited() {
	if c == nil {
		return
	}
	c.r.mu.Lock()
	c.rateLimited++
	c.r.mu.Unlock()
}

// Sweep forgets REST clients idle for longer than Options.RESTIdle.
func (r *Registry) Sweep() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweepLocked()
}

func (r *Registry) sweepLocked() {
	now := r.opts.Now()
	for key, c := range r.rest {
		if now.Sub(c.last) < r.opts.RESTIdle {
			continue
		}
		delete(r.rest, key)
		d := Disconnect{Transport: "rest", Peer: c.peer, ConnectedSince: c.first, DisconnectedAt: now, Reason: ReasonRESTIdle,
			Detail: "no request for " + r.opts.RESTIdle.String()}
		if c.node != nil {
			d.Nodes = []NodeRef{{ID: c.node.ID, Cluster: c.node.Cluster}}
		}
		r.remember(d)
	}
}

// Stats are the registry's counts, for gauges.
type Stats struct {
	// Connections counts open gRPC connections, with or without streams.
	Connections int
	// Streams counts open streams by kind.
	Streams map[Kind]int
	// Clients counts distinct nodes by transport (grpc, rest) and client
	// type (see ClientType). A gRPC node counts once however many
	// connections and streams it has; a stream that has not said which
	// node it is does not count.
	Clients map[ClientKey]int
}

// ClientKey is a transport and a client type.
type ClientKey struct {
	Transport string
	Client    string
}

// Stats counts what is connected now.
func (r *Registry) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweepLocked()
	st := Stats{Connections: len(r.conns), Streams: map[Kind]int{}, Clients: map[ClientKey]int{}}
	nodes := map[string]string{}
	for _, c := range r.conns {
		for s := range c.streams {
			st.Streams[s.kind]++
			if s.node != nil {
				nodes[s.node.ID] = ClientType(s.node)
			}
		}
	}
	for _, t := range nodes {
		st.Clients[ClientKey{"grpc", t}]++
	}
	for _, c := range r.rest {
		st.Clients[ClientKey{"rest", ClientType(c.node)}]++
	}
	return st
}
