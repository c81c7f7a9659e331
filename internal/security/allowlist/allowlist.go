// Package allowlist decides which node an xDS client may claim to be.
// A client's identity is a URI SAN (a SPIFFE ID, say) or DNS SAN of the
// certificate it presented and the server verified; a rule lets an
// identity claim node ids and node clusters, so that one proxy cannot
// ask for another's configuration by putting its id in the request.
//
// For gRPC, StreamInterceptor checks the node of every discovery request
// before go-control-plane sees it and ends a refused stream with
// codes.PermissionDenied. For REST, HTTPMiddleware does the same before
// the gateway and answers 403. Check is the same decision for any other
// place that has a context and a node.
package allowlist

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// Rule lets the clients whose certificate has a matching identity claim
// the matching nodes. Patterns are path.Match globs: '*' matches any run
// of characters but '/', '?' one character, [a-z] a class. A node must
// match NodeIDs (when set) and NodeClusters (when set); a rule sets at
// least one of them — ["*"] says "any".
type Rule struct {
	// Identity matches a URI SAN (spiffe://example.org/envoy/*) or DNS
	// SAN (envoy-1.example.org) of the client certificate.
	Identity string
	// NodeIDs match node.id.
	NodeIDs []string
	// NodeClusters match node.cluster.
	NodeClusters []string
}

// Reason says why a client was refused; it is a metric label.
type Reason string

const (
	// NoCertificate: the client presented no certificate the server
	// verified (TLS off, or no client CA configured).
	NoCertificate Reason = "no_certificate"
	// NoNode: the first request of a stream, or a REST request, carries
	// no node.
	NoNode Reason = "no_node"
	// NotAllowed: no rule lets the client's identity claim the node.
	NotAllowed Reason = "not_allowed"
)

// numReasons is how many Reasons there are; index numbers them.
const numReasons = 3

func (r Reason) index() int {
	switch r {
	case NoCertificate:
		return 0
	case NoNode:
		return 1
	}
	return 2
}

// Rejection is one refused request.
type Rejection struct {
	Reason Reason
	// Identity is the client's, "" without a certificate.
	Identity    string
	NodeID      string
	NodeCluster string
}

// Options are a List's logger and metrics hook.
type Options struct {
	// Logger gets a warning per refused request.
	Logger *slog.Logger
	// OnReject, when set, is called for every refused request, e.g. to
	// count it in xdsbridge_xds_clients_rejected_total{reason}.
	OnReject func(Rejection)
}

// List is a set of rules. A nil *List allows everything, so a server
// can install its interceptor whether or not an allow list is
// configured.
type List struct {
	rules    []Rule
	opts     Options
	rejected [numReasons]atomic.Uint64
}

// ValidPattern reports whether p is a well-formed pattern.
func ValidPattern(p string) error {
	if p == "" {
		return errors.New("empty pattern")
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("pattern %q: %w", p, err)
	}
	return nil
}

// New returns a List of rules, checking every pattern; errors name the
// rule (rules[i].node_ids[j]) and are all reported.
func New(rules []Rule, opts Options) (*List, error) {
	var errs []error
	if len(rules) == 0 {
		errs = append(errs, errors.New("allowlist: no rules: every client would be refused"))
	}
	for i, r := range rules {
		if err := ValidPattern(r.Identity); err != nil {
			errs = append(errs, fmt.Errorf("allowlist: rules[%d].identity: %w", i, err))
		}
		if len(r.NodeIDs) == 0 && len(r.NodeClusters) == 0 {
			errs = append(errs, fmt.Errorf("allowlist: rules[%d]: set node_ids or node_clusters (or both); [\"*\"] allows any", i))
		}
		for j, p := range r.NodeIDs {
			if err := ValidPattern(p); err != nil {
				errs = append(errs, fmt.Errorf("allowlist: rules[%d].node_ids[%d]: %w", i, j, err))
			}
		}
		for j, p := range r.NodeClusters {
			if err := ValidPattern(p); err != nil {
				errs = append(errs, fmt.Errorf("allowlist: rules[%d].node_clusters[%d]: %w", i, j, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &List{rules: rules, opts: opts}, nil
}

// Identity is what a verified client certificate says about its holder.
type Identity struct {
	URIs     []string
	DNSNames []string
}

// String is the identity for logs: the first URI SAN, else the first DNS
// SAN.
func (id Identity) String() string {
	switch {
	case len(id.URIs) > 0:
		return id.URIs[0]
	case len(id.DNSNames) > 0:
		return id.DNSNames[0]
	}
	return "(certificate without URI or DNS names)"
}

// IdentityOf returns the identity of the client certificate of a
// connection, when the server verified one. An unverified certificate
// (tls.RequestClientCert) gives none.
func IdentityOf(cs *tls.ConnectionState) (Identity, bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, false
	}
	leaf := cs.VerifiedChains[0][0]
	id := Identity{DNSNames: leaf.DNSNames}
	for _, u := range leaf.URIs {
		id.URIs = append(id.URIs, u.String())
	}
	return id, true
}

type connStateKey struct{}

// ContextWithConnState returns ctx carrying an HTTP request's TLS state
// (r.TLS), for PeerIdentity and Check. HTTPMiddleware does it.
func ContextWithConnState(ctx context.Context, cs *tls.ConnectionState) context.Context {
	if cs == nil {
		return ctx
	}
	return context.WithValue(ctx, connStateKey{}, cs)
}

// PeerIdentity returns the verified client identity of a gRPC call's
// context, or of a context from ContextWithConnState.
func PeerIdentity(ctx context.Context) (Identity, bool) {
	if cs, ok := ctx.Value(connStateKey{}).(*tls.ConnectionState); ok {
		return IdentityOf(cs)
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return Identity{}, false
	}
	return IdentityOf(&ti.State)
}

// Check decides whether the verified client of ctx may claim node. It
// returns nil or a status error with codes.PermissionDenied, which it
// counts and logs.
func (l *List) Check(ctx context.Context, node *corev3.Node) error {
	if l == nil {
		return nil
	}
	id, ok := PeerIdentity(ctx)
	if !ok {
		return l.reject(Rejection{Reason: NoCertificate, NodeID: node.GetId(), NodeCluster: node.GetCluster()},
			"xds: a verified client certificate is required to connect as node %q", node.GetId())
	}
	return l.Authorize(id, node)
}

// Authorize decides whether a client with a verified identity may claim
// node, like Check.
func (l *List) Authorize(id Identity, node *corev3.Node) error {
	if l == nil {
		return nil
	}
	if node == nil {
		return l.reject(Rejection{Reason: NoNode, Identity: id.String()},
			"xds: client %s sent no node: the first request must carry one", id)
	}
	for _, r := range l.rules {
		if r.allows(id, node) {
			return nil
		}
	}
	return l.reject(Rejection{Reason: NotAllowed, Identity: id.String(), NodeID: node.GetId(), NodeCluster: node.GetCluster()},
		"xds: client %s may not connect as node %q in cluster %q", id, node.GetId(), node.GetCluster())
}

func (r Rule) allows(id Identity, node *corev3.Node) bool {
	return r.identity(id) &&
		(len(r.NodeIDs) == 0 || anyMatch(r.NodeIDs, node.GetId())) &&
		(len(r.NodeClusters) == 0 || anyMatch(r.NodeClusters, node.GetCluster()))
}

func (r Rule) identity(id Identity) bool {
	for _, names := range [][]string{id.URIs, id.DNSNames} {
		for _, n := range names {
			if ok, _ := path.Match(r.Identity, n); ok {
				return true
			}
		}
	}
	return false
}

func anyMatch(patterns []string, s string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

func (l *List) reject(rej Rejection, format string, args ...any) error {
	l.rejected[rej.Reason.index()].Add(1)
	l.opts.Logger.Warn("xds client refused", "reason", string(rej.Reason), "identity", rej.Identity,
		"node", rej.NodeID, "node_cluster", rej.NodeCluster)
	if l.opts.OnReject != nil {
		l.opts.OnReject(rej)
	}
	return status.Errorf(codes.PermissionDenied, format, args...)
}

// Rejected returns how many requests were refused, by reason; every
// reason is present.
func (l *List) Rejected() map[Reason]uint64 {
	out := make(map[Reason]uint64, numReasons)
	for _, r := range []Reason{NoCertificate, NoNode, NotAllowed} {
		out[r] = 0
		if l != nil {
			out[r] = l.rejected[r.index()].Load()
		}
	}
	return out
}

// nodeRequest is a discovery request, SotW or delta.
type nodeRequest interface{ GetNode() *corev3.Node }

// StreamInterceptor checks the node of every discovery request received
// on a stream. The first request must carry a node the client may claim;
// a later request may leave it out (set_node_on_first_message_only) but
// not change it to one the client may not claim. A refused request never
// reaches the handler: the stream ends with codes.PermissionDenied.
// Streams of other services (no node in their messages) pass.
func (l *List) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if l == nil {
			return handler(srv, ss)
		}
		gs := &guardedStream{ServerStream: ss, l: l}
		gs.id, gs.verified = PeerIdentity(ss.Context())
		err := handler(srv, gs)
		// go-control-plane ends a stream whose Recv fails with no
		// error of its own; the refusal is what the client must see.
		if rej := gs.refused.Load(); rej != nil {
			return *rej
		}
		return err
	}
}

type guardedStream struct {
	grpc.ServerStream
	l        *List
	id       Identity
	verified bool

	// Only the stream's one receiving goroutine touches these two.
	claimed    bool
	id0, clus0 string

	refused atomic.Pointer[error]
}

func (gs *guardedStream) RecvMsg(m any) error {
	if err := gs.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	req, ok := m.(nodeRequest)
	if !ok {
		return nil
	}
	node := req.GetNode()
	if gs.claimed && (node == nil || node.GetId() == gs.id0 && node.GetCluster() == gs.clus0) {
		return nil
	}
	var err error
	if gs.verified {
		err = gs.l.Authorize(gs.id, node)
	} else {
		err = gs.l.Check(gs.Context(), node)
	}
	if err != nil {
		gs.refused.Store(&err)
		return err
	}
	gs.claimed, gs.id0, gs.clus0 = true, node.GetId(), node.GetCluster()
	return nil
}

// HTTPMiddleware checks the node of every REST discovery request (POST,
// a JSON DiscoveryRequest of at most maxBody bytes) before next sees it:
// a refused request gets 403 with the reason. The body is handed on
// unchanged and the request's context carries its TLS state (see
// ContextWithConnState). Requests of other methods go to next, which
// must refuse them.
func (l *List) HTTPMiddleware(next http.Handler, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(ContextWithConnState(r.Context(), r.TLS))
		if l == nil || r.Method != http.MethodPost {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
				http.Error(w, fmt.Sprintf("xds: request body larger than %d bytes", maxBody), http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "xds: cannot read body", http.StatusBadRequest)
			return
		}
		req := new(discoveryv3.DiscoveryRequest)
		if err := protojson.Unmarshal(body, req); err != nil {
			// The gateway would refuse it too; refusing here keeps an
			// unchecked body from ever reaching it.
			http.Error(w, "xds: cannot parse JSON body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := l.Check(r.Context(), req.GetNode()); err != nil {
			http.Error(w, strings.TrimSpace(status.Convert(err).Message()), http.StatusForbidden)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}
