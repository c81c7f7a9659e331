package conns

import (
	"fmt"
	"slices"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

// Kind is a stream's variant of the protocol.
type Kind uint8

// Stream kinds.
const (
	// SotW is a state-of-the-world stream of one type (StreamClusters, …).
	SotW Kind = iota
	// SotWADS is a state-of-the-world aggregated stream.
	SotWADS
	// Delta is an incremental stream of one type (DeltaClusters, …).
	Delta
	// DeltaADS is an incremental aggregated stream.
	DeltaADS
)

// Kinds lists every Kind.
func Kinds() []Kind { return []Kind{SotW, SotWADS, Delta, DeltaADS} }

func (k Kind) String() string {
	switch k {
	case SotW:
		return "sotw"
	case SotWADS:
		return "sotw_ads"
	case Delta:
		return "delta"
	case DeltaADS:
		return "delta_ads"
	}
	return "unknown"
}

// MarshalText makes a Kind a JSON string.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a Kind's String.
func (k *Kind) UnmarshalText(b []byte) error {
	for _, c := range Kinds() {
		if c.String() == string(b) {
			*k = c
			return nil
		}
	}
	return fmt.Errorf("conns: unknown stream kind %q", b)
}

// Verdict is what a request says about the response before it.
type Verdict uint8

// Verdicts.
const (
	// Subscribe is a request that answers no response: the first of its
	// type on the stream, or a change of subscription.
	Subscribe Verdict = iota
	// ACK accepts the response named by the request's nonce.
	ACK
	// NACK rejects it: the request carries an error_detail.
	NACK
)

// Outcome is how a request was classified.
type Outcome struct {
	Verdict Verdict
	// Nonce is the nonce of the response the request answers.
	Nonce string
	// Version is the version accepted (ACK) or rejected (NACK); "" when
	// the response is unknown.
	Version string
}

// recentSent is how many responses per type are remembered to match a
// late ACK's nonce to its version.
const recentSent = 4

// Stream is one xDS stream on a connection.
type Stream struct {
	c       *Conn
	id      int64
	kind    Kind
	typeURL string // the stream's type; "" for ADS
	opened  time.Time

	// Guarded by c.r.mu.
	node   *Node
	types  map[string]*typeState
	closed bool
}

// typeState is what the registry knows about one type on one stream, or
// for one REST client.
type typeState struct {
	since       time.Time
	lastRequest time.Time
	requests    uint64
	// SotW and REST subscriptions are replaced by each request; delta
	// subscriptions change by the names each request adds and removes.
	names    []string
	delta    map[string]struct{}
	wildcard bool

	responses uint64
	bytes     uint64
	sent      [recentSent]Sent // ring, newest at sent[sentPos-1]
	sentPos   int
	lastSent  *Sent

	acks     uint64
	nacks    uint64
	lastACK  *ACKInfo
	lastNACK *NACKInfo

	// REST only.
	notModified   uint64
	reportedVer   string   // the version_info of the client's last request
	lastSentNames []string // names in the last response, for attribution
}

// Sent describes a response.
type Sent struct {
	Version   string    `json:"version"`
	Nonce     string    `json:"nonce,omitempty"`
	At        time.Time `json:"at"`
	Resources int       `json:"resources"`
	// Removed counts the names a delta response removed.
	Removed int `json:"removed,omitempty"`
}

// ACKInfo is the last accepted response of a type.
type ACKInfo struct {
	Version string    `json:"version"`
	Nonce   string    `json:"nonce,omitempty"`
	At      time.Time `json:"at"`
}

// NACKInfo is the last rejected response of a type.
type NACKInfo struct {
	// Version is the version rejected; "" when the response is unknown.
	Version string    `json:"version"`
	Nonce   string    `json:"nonce,omitempty"`
	At      time.Time `json:"at"`
	Code    int32     `json:"code,omitempty"`
	Detail  string    `json:"detail"`
}

func (ts *typeState) versionOf(nonce string) string {
	if nonce == "" {
		return ""
	}
	for _, s := range ts.sent {
		if s.Nonce == nonce {
			return s.Version
		}
	}
	return ""
}

func (ts *typeState) recordSent(s Sent) {
	ts.responses++
	ts.sent[ts.sentPos] = s
	ts.sentPos = (ts.sentPos + 1) % recentSent
	ts.lastSent = &ts.sent[(ts.sentPos+recentSent-1)%recentSent]
}

// OpenStream registers a stream of the connection. kind and typeURL are
// the stream's ("" for ADS); id is the server's stream id. It returns nil
// when the connection is already closed.
func (c *Conn) OpenStream(id int64, kind Kind, typeURL string) *Stream {
	if c == nil {
		return nil
	}
	r := c.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.closed {
		return nil
	}
	s := &Stream{c: c, id: id, kind: kind, typeURL: typeURL, opened: r.opts.Now(), types: map[string]*typeState{}}
	c.streams[s] = struct{}{}
	return s
}

// Close forgets the stream.
func (s *Stream) Close() {
	if s == nil {
		return
	}
	r := s.c.r
	r.mu.Lock()
	defer r.mu.Unlock()
	s.closed = true
	if s.c.streams != nil {
		delete(s.c.streams, s)
	}
}

// typeLocked returns the state of typeURL (the stream's own type when
// empty), creating it.
func (s *Stream) typeLocked(typeURL string, now time.Time) *typeState {
	if typeURL == "" {
		typeURL = s.typeURL
	}
	ts := s.types[typeURL]
	if ts == nil {
		ts = &typeState{since: now}
		s.types[typeURL] = ts
	}
	return ts
}

// Request records a state-of-the-world request and classifies it.
func (s *Stream) Request(req *discovery.DiscoveryRequest) Outcome {
	if s == nil {
		return classifySotW(req, nil)
	}
	r := s.c.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.closed {
		return classifySotW(req, nil)
	}
	now := r.opts.Now()
	s.c.lastRequest = now
	s.c.requests++
	if req.GetNode() != nil && s.node == nil {
		s.node = nodeOf(req.GetNode())
		s.c.noteNodeLocked(s.node)
	}
	ts := s.typeLocked(req.GetTypeUrl(), now)
	ts.requests++
	ts.lastRequest = now
	ts.names = req.GetResourceNames()
	ts.wildcard = len(ts.names) == 0 || slices.Contains(ts.names, "*")
	out := classifySotW(req, ts)
	ts.record(out, req.GetErrorDetail().GetCode(), req.GetErrorDetail().GetMessage(), now)
	return out
}

// classifySotW classifies a SotW request: an error detail is a NACK, a
// nonce without one an ACK of the version the request reports.
func classifySotW(req *discovery.DiscoveryRequest, ts *typeState) Outcome {
	nonce := req.GetResponseNonce()
	switch {
	case req.GetErrorDetail() != nil:
		out := Outcome{Verdict: NACK, Nonce: nonce}
		if ts != nil {
			out.Version = ts.versionOf(nonce)
		}
		return out
	case nonce != "":
		return Outcome{Verdict: ACK, Nonce: nonce, Version: req.GetVersionInfo()}
	}
	return Outcome{Verdict: Subscribe}
}

func (ts *typeState) record(out Outcome, code int32, detail string, now time.Time) {
	switch out.Verdict {
	case ACK:
		ts.acks++
		ts.lastACK = &ACKInfo{Version: out.Version, Nonce: out.Nonce, At: now}
	case NACK:
		ts.nacks++
		ts.lastNACK = &NACKInfo{Version: out.Version, Nonce: out.Nonce, At: now, Code: code, Detail: detail}
	}
}

// DeltaRequest records an incremental request and classifies it: an error
// detail is a NACK, a nonce without one an ACK of the version sent with
// that nonce.
func (s *Stream) DeltaRequest(req *discovery.DeltaDiscoveryRequest) Outcome {
	nonce := req.GetResponseNonce()
	out := Outcome{Verdict: Subscribe}
	switch {
	case req.GetErrorDetail() != nil:
		out = Outcome{Verdict: NACK, Nonce: nonce}
	case nonce != "":
		out = Outcome{Verdict: ACK, Nonce: nonce}
	}
	if s == nil {
		return out
	}
	r := s.c.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.closed {
		return out
	}
	now := r.opts.Now()
	s.c.lastRequest = now
	s.c.requests++
	if req.GetNode() != nil && s.node == nil {
		s.node = nodeOf(req.GetNode())
		s.c.noteNodeLocked(s.node)
	}
	ts := s.typeLocked(req.GetTypeUrl(), now)
	if ts.delta == nil {
		ts.delta = map[string]struct{}{}
		// A first request that names nothing is a legacy wildcard.
		ts.wildcard = len(req.GetResourceNamesSubscribe()) == 0
	}
	for _, n := range req.GetResourceNamesSubscribe() {
		if n == "*" {
			ts.wildcard = true
			continue
		}
		ts.delta[n] = struct{}{}
	}
	for _, n := range req.GetResourceNamesUnsubscribe() {
		if n == "*" {
			ts.wildcard = false
			continue
		}
		delete(ts.delta, n)
	}
	ts.requests++
	ts.lastRequest = now
	if out.Verdict != Subscribe {
		out.Version = ts.versionOf(nonce)
	}
	ts.record(out, req.GetErrorDetail().GetCode(), req.GetErrorDetail().GetMessage(), now)
	return out
}

// Response records a response about to be written: its type, version,
// nonce and how many resources it carries (and, for delta, removes).
func (s *Stream) Response(typeURL, version, nonce string, resources, removed int) {
	if s == nil {
		return
	}
	r := s.c.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.closed {
		return
	}
	now := r.opts.Now()
	s.c.responses++
	s.typeLocked(typeURL, now).recordSent(Sent{Version: version, Nonce: nonce, At: now, Resources: resources, Removed: removed})
}

// Written records that n bytes of a response of typeURL were written. It
// returns when the stream first requested the type, zero if unknown.
func (s *Stream) Written(typeURL string, n int) (subscribed time.Time) {
	if s == nil {
		return time.Time{}
	}
	r := s.c.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.closed {
		return time.Time{}
	}
	s.c.bytes += uint64(n)
	ts := s.typeLocked(typeURL, r.opts.Now())
	ts.bytes += uint64(n)
	return ts.since
}
