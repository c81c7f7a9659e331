package conns

import (
	"cmp"
	"maps"
	"slices"
	"time"
)

// Snapshot is the registry at one moment, as GET /debug/clients shows it.
type Snapshot struct {
	// Connections are the open gRPC connections, oldest first.
	Connections []ConnView `json:"connections"`
	// Nodes are the connected nodes (gRPC and REST), by id.
	Nodes []NodeView `json:"nodes"`
	// REST are the REST clients seen within the idle timeout.
	REST []RESTView `json:"rest_clients"`
	// RecentDisconnects are the last disconnects, newest first; at most
	// HistorySize are kept.
	RecentDisconnects []Disconnect `json:"recent_disconnects"`
	HistorySize       int          `json:"history_size"`
}

// ConnView is one gRPC connection.
type ConnView struct {
	ID             uint64    `json:"id"`
	Peer           string    `json:"peer"`
	Local          string    `json:"local"`
	ConnectedSince time.Time `json:"connected_since"`
	LastRequest    time.Time `json:"last_request,omitzero"`
	// Node is the first node a stream of the connection named.
	Node        *Node        `json:"node,omitempty"`
	Requests    uint64       `json:"requests"`
	Responses   uint64       `json:"responses"`
	BytesSent   uint64       `json:"bytes_sent"`
	RateLimited uint64       `json:"rate_limited"`
	Streams     []StreamView `json:"streams"`
}

// StreamView is one stream.
type StreamView struct {
	ID     int64     `json:"id"`
	Kind   Kind      `json:"kind"`
	Opened time.Time `json:"opened"`
	// TypeURL is the stream's type; empty for ADS.
	TypeURL string     `json:"type_url,omitempty"`
	NodeID  string     `json:"node_id"`
	Types   []TypeView `json:"types"`
}

// TypeView is the state of one type on a stream or for a REST client.
type TypeView struct {
	TypeURL string `json:"type_url"`
	// Subscribed are the names subscribed to, sorted; Wildcard says the
	// client asked for every resource of the type.
	Subscribed  []string  `json:"subscribed"`
	Wildcard    bool      `json:"wildcard"`
	Since       time.Time `json:"since"`
	LastRequest time.Time `json:"last_request"`
	Requests    uint64    `json:"requests"`
	Responses   uint64    `json:"responses"`
	BytesSent   uint64    `json:"bytes_sent"`
	LastSent    *Sent     `json:"last_sent"`
	ACKs        uint64    `json:"acks"`
	NACKs       uint64    `json:"nacks"`
	LastACK     *ACKInfo  `json:"last_ack"`
	LastNACK    *NACKInfo `json:"last_nack"`
	// REST only: how many polls were answered 304, and the version the
	// client said it has in its last request.
	NotModified     uint64 `json:"not_modified,omitempty"`
	ReportedVersion string `json:"reported_version,omitempty"`
}

// RESTView is one REST client.
type RESTView struct {
	Node        *Node      `json:"node,omitempty"`
	Peer        string     `json:"peer"`
	FirstSeen   time.Time  `json:"first_seen"`
	LastRequest time.Time  `json:"last_request"`
	Requests    uint64     `json:"requests"`
	Types       []TypeView `json:"types"`
}

// NodeView summarises one node across its connections.
type NodeView struct {
	Node
	// Connections are the ids of the gRPC connections the node has
	// streams on; REST says it polls over REST.
	Connections    []uint64  `json:"connections"`
	Streams        int       `json:"streams"`
	REST           bool      `json:"rest"`
	ConnectedSince time.Time `json:"connected_since"`
	LastRequest    time.Time `json:"last_request,omitzero"`
}

// Snapshot copies the registry. When node is not empty, only that node's
// connections, streams and REST state are included (its history too).
func (r *Registry) Snapshot(node string) Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweepLocked()
	out := Snapshot{Connections: []ConnView{}, Nodes: []NodeView{}, REST: []RESTView{}, HistorySize: len(r.history)}
	nodes := map[string]*NodeView{}
	nodeView := func(n *Node, since, last time.Time) *NodeView {
		nv := nodes[n.ID]
		if nv == nil {
			nv = &NodeView{Node: *n, ConnectedSince: since, Connections: []uint64{}}
			nodes[n.ID] = nv
		}
		if since.Before(nv.ConnectedSince) {
			nv.ConnectedSince = since
		}
		if last.After(nv.LastRequest) {
			nv.LastRequest = last
		}
		return nv
	}

	for _, id := range slices.Sorted(maps.Keys(r.conns)) {
		c := r.conns[id]
		cv := ConnView{ID: c.id, Peer: c.peer, Local: c.local, ConnectedSince: c.since, LastRequest: c.lastRequest,
			Requests: c.requests, Responses: c.responses, BytesSent: c.bytes, RateLimited: c.rateLimited, Streams: []StreamView{}}
		streams := slices.SortedFunc(maps.Keys(c.streams), func(a, b *Stream) int {
			return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.id, b.id))
		})
		if len(c.nodes) > 0 {
			n := *c.nodes[0]
			cv.Node = &n
		}
		match := node == "" || slices.ContainsFunc(c.nodes, func(n *Node) bool { return n.ID == node })
		for _, s := range streams {
			sv := StreamView{ID: s.id, Kind: s.kind, Opened: s.opened, TypeURL: s.typeURL, Types: typeViews(s.types)}
			if s.node != nil {
				sv.NodeID = s.node.ID
				nv := nodeView(s.node, c.since, c.lastRequest)
				if !slices.Contains(nv.Connections, c.id) {
					nv.Connections = append(nv.Connections, c.id)
				}
				nv.Streams++
			}
			if node != "" && sv.NodeID != node {
				continue
			}
			match = true
			cv.Streams = append(cv.Streams, sv)
		}
		if match {
			out.Connections = append(out.Connections, cv)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(r.rest)) {
		c := r.rest[key]
		rv := RESTView{Peer: c.peer, FirstSeen: c.first, LastRequest: c.last, Requests: c.requests, Types: typeViews(c.types)}
		if c.node != nil {
			n := *c.node
			rv.Node = &n
			nodeView(c.node, c.first, c.last).REST = true
		}
		if node != "" && (c.node == nil || c.node.ID != node) {
			continue
		}
		out.REST = append(out.REST, rv)
	}
	for _, id := range slices.Sorted(maps.Keys(nodes)) {
		if node != "" && id != node {
			continue
		}
		out.Nodes = append(out.Nodes, *nodes[id])
	}
	out.RecentDisconnects = []Disconnect{}
	for _, d := range r.recent() {
		if node != "" && !slices.ContainsFunc(d.Nodes, func(n NodeRef) bool { return n.ID == node }) {
			continue
		}
		d.Nodes = slices.Clone(d.Nodes)
		out.RecentDisconnects = append(out.RecentDisconnects, d)
	}
	return out
}

func typeViews(types map[string]*typeState) []TypeView {
	out := make([]TypeView, 0, len(types))
	for _, url := range slices.Sorted(maps.Keys(types)) {
		ts := types[url]
		tv := TypeView{TypeURL: url, Wildcard: ts.wildcard, Since: ts.since, LastRequest: ts.lastRequest,
			Requests: ts.requests, Responses: ts.responses, BytesSent: ts.bytes, ACKs: ts.acks, NACKs: ts.nacks,
			NotModified: ts.notModified, ReportedVersion: ts.reportedVer}
		if ts.delta != nil {
			tv.Subscribed = slices.Sorted(maps.Keys(ts.delta))
		} else {
			tv.Subscribed = slices.Clone(ts.names)
			slices.Sort(tv.Subscribed)
			tv.Subscribed = slices.Compact(tv.Subscribed)
		}
		if tv.Subscribed == nil {
			tv.Subscribed = []string{}
		}
		if ts.lastSent != nil {
			s := *ts.lastSent
			tv.LastSent = &s
		}
		if ts.lastACK != nil {
			a := *ts.lastACK
			tv.LastACK = &a
		}
		if ts.lastNACK != nil {
			n := *ts.lastNACK
			tv.LastNACK = &n
		}
		out = append(out, tv)
	}
	return out
}

func sortNodeRefs(ns []NodeRef) {
	slices.SortFunc(ns, func(a, b NodeRef) int { return cmp.Compare(a.ID, b.ID) })
}
