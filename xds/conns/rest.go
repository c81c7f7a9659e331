package conns

import (
	"net"
	"slices"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

// REST is a REST client: one node polling over HTTP. It has no stream, so
// it is keyed by node id (by peer host when the request names no node) and
// forgotten after Options.RESTIdle without a request.
type REST struct {
	r    *Registry
	key  string
	peer string

	// Guarded by r.mu.
	node     *Node
	first    time.Time
	last     time.Time
	requests uint64
	types    map[string]*typeState
}

// Fetch is one REST request in progress: Fetch records the request, and
// the handle records its response.
type Fetch struct {
	c       *REST
	typeURL string
}

// Fetch records a REST request from peer and classifies it. A request with
// an error_detail is a NACK of the version last sent to the client; one
// whose version_info is the version last sent, and that had not been
// acknowledged yet, is an ACK. Anything else (a poll) is Subscribe.
func (r *Registry) Fetch(peer string, req *discovery.DiscoveryRequest) (*Fetch, Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.opts.Now()
	key := "node:" + req.GetNode().GetId()
	if req.GetNode().GetId() == "" {
		host, _, err := net.SplitHostPort(peer)
		if err != nil {
			host = peer
		}
		key = "peer:" + host
	}
	c := r.rest[key]
	if c == nil {
		c = &REST{r: r, key: key, peer: peer, first: now, types: map[string]*typeState{}}
		r.rest[key] = c
	}
	c.peer = peer
	if req.GetNode() != nil {
		c.node = nodeOf(req.GetNode())
	}
	c.last = now
	c.requests++
	ts := c.types[req.GetTypeUrl()]
	if ts == nil {
		ts = &typeState{since: now}
		c.types[req.GetTypeUrl()] = ts
	}
	ts.requests++
	ts.lastRequest = now
	ts.names = req.GetResourceNames()
	ts.wildcard = len(ts.names) == 0 || slices.Contains(ts.names, "*")
	ts.reportedVer = req.GetVersionInfo()

	out := Outcome{Verdict: Subscribe}
	var sentVer string
	if ts.lastSent != nil {
		sentVer = ts.lastSent.Version
	}
	switch {
	case req.GetErrorDetail() != nil:
		out = Outcome{Verdict: NACK, Version: sentVer}
	case sentVer != "" && req.GetVersionInfo() == sentVer && (ts.lastACK == nil || ts.lastACK.Version != sentVer):
		out = Outcome{Verdict: ACK, Version: sentVer}
	}
	ts.record(out, req.GetErrorDetail().GetCode(), req.GetErrorDetail().GetMessage(), now)
	return &Fetch{c: c, typeURL: req.GetTypeUrl()}, out
}

// LastSentNames returns the resource names of the last response sent to
// the client for the fetch's type, for attributing its ACK or NACK.
func (f *Fetch) LastSentNames() []string {
	if f == nil {
		return nil
	}
	r := f.c.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if ts := f.c.types[f.typeURL]; ts != nil {
		return ts.lastSentNames
	}
	return nil
}

// Response records the response to the fetch: its version, the names of
// its resources and its size in bytes.
func (f *Fetch) Response(version string, names []string, bytes int) {
	if f == nil {
		return
	}
	r := f.c.r
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.opts.Now()
	ts := f.c.types[f.typeURL]
	if ts == nil {
		return
	}
	ts.recordSent(Sent{Version: version, At: now, Resources: len(names)})
	ts.lastSentNames = names
	ts.bytes += uint64(bytes)
}

// NotModified records that the client was told it is current (HTTP 304).
func (f *Fetch) NotModified() {
	if f == nil {
		return
	}
	r := f.c.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if ts := f.c.types[f.typeURL]; ts != nil {
		ts.notModified++
	}
}
