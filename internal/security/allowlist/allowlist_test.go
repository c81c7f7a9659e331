package allowlist_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/xdsbridge/xdsbridge/internal/security/allowlist"
	"github.com/xdsbridge/xdsbridge/internal/security/securitytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testRules = []allowlist.Rule{
	{Identity: "spiffe://example.org/envoy/envoy-1", NodeIDs: []string{"envoy-1"}, NodeClusters: []string{"edge"}},
	{Identity: "spiffe://example.org/ingress/*", NodeIDs: []string{"ingress-*"}},
	{Identity: "*.grpc.example.org", NodeClusters: []string{"grpc-*"}},
	{Identity: "spiffe://example.org/ops/debug", NodeIDs: []string{"*"}},
}

func node(id, cluster string) *corev3.Node { return &corev3.Node{Id: id, Cluster: cluster} }

func TestAuthorize(t *testing.T) {
	tests := []struct {
		name string
		id   allowlist.Identity
		node *corev3.Node
		want allowlist.Reason // "" allowed
	}{
		{"own node", uri("spiffe://example.org/envoy/envoy-1"), node("envoy-1", "edge"), ""},
		{"own id, other cluster", uri("spiffe://example.org/envoy/envoy-1"), node("envoy-1", "billing"), allowlist.NotAllowed},
		{"another node", uri("spiffe://example.org/envoy/envoy-1"), node("envoy-2", "edge"), allowlist.NotAllowed},
		{"unknown identity", uri("spiffe://example.org/envoy/envoy-2"), node("envoy-1", "edge"), allowlist.NotAllowed},
		{"glob identity and id", uri("spiffe://example.org/ingress/eu-1"), node("ingress-7", "anything"), ""},
		{"glob id does not match", uri("spiffe://example.org/ingress/eu-1"), node("envoy-1", "edge"), allowlist.NotAllowed},
		{"star does not cross a slash", uri("spiffe://example.org/ingress/eu/1"), node("ingress-7", ""), allowlist.NotAllowed},
		{"dns name", allowlist.Identity{DNSNames: []string{"billing.grpc.example.org"}}, node("any", "grpc-billing"), ""},
		{"dns name, other cluster", allowlist.Identity{DNSNames: []string{"billing.grpc.example.org"}}, node("any", "edge"), allowlist.NotAllowed},
		{"second URI matches", uri("spiffe://other.org/x", "spiffe://example.org/envoy/envoy-1"), node("envoy-1", "edge"), ""},
		{"any node", uri("spiffe://example.org/ops/debug"), node("whatever", "whichever"), ""},
		{"no names", allowlist.Identity{}, node("envoy-1", "edge"), allowlist.NotAllowed},
		{"no node", uri("spiffe://example.org/envoy/envoy-1"), nil, allowlist.NoNode},
	}
	var got []allowlist.Rejection
	l, err := allowlist.New(testRules, allowlist.Options{OnReject: func(r allowlist.Rejection) { got = append(got, r) }})
	if err != nil {
		t.Fatal(err)
	}
	denied := map[allowlist.Reason]uint64{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(got)
			err := l.Authorize(tt.id, tt.node)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			denied[tt.want]++
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("error %v, want PermissionDenied", err)
			}
			if len(got) != before+1 || got[len(got)-1].Reason != tt.want {
				t.Fatalf("OnReject got %v, want one rejection for %s", got[before:], tt.want)
			}
			if r := got[len(got)-1]; r.NodeID != tt.node.GetId() || r.NodeCluster != tt.node.GetCluster() {
				t.Errorf("rejection %+v does not name the node", r)
			}
		})
	}
	for reason, n := range l.Rejected() {
		if n != denied[reason] {
			t.Errorf("Rejected()[%s] = %d, want %d", reason, n, denied[reason])
		}
	}
}

func uri(u ...string) allowlist.Identity { return allowlist.Identity{URIs: u} }

func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name  string
		rules []allowlist.Rule
		want  []string
	}{
		{"no rules", nil, []string{"no rules"}},
		{"empty identity", []allowlist.Rule{{NodeIDs: []string{"a"}}}, []string{"rules[0].identity: empty pattern"}},
		{"no node patterns", []allowlist.Rule{{Identity: "spiffe://x/y"}}, []string{"rules[0]: set node_ids or node_clusters"}},
		{"bad patterns", []allowlist.Rule{
			{Identity: "a", NodeIDs: []string{"ok"}},
			{Identity: "spiffe://x/[", NodeIDs: []string{"ok", "[z-"}, NodeClusters: []string{"\\"}},
		}, []string{"rules[1].identity", "rules[1].node_ids[1]", "rules[1].node_clusters[0]", "syntax error in pattern"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := allowlist.New(tt.rules, allowlist.Options{})
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// verifiedState is the TLS state of a connection whose client presented
// cert, verified against ca.
func verifiedState(cert tls.Certificate, ca *securitytest.CA) *tls.ConnectionState {
	return &tls.ConnectionState{
		PeerCertificates: []*x509.Certificate{cert.Leaf},
		VerifiedChains:   [][]*x509.Certificate{{cert.Leaf, ca.Cert}},
	}
}

// TestCheckContexts checks where Check finds the client's certificate: a
// gRPC peer's TLS info, or an HTTP request's state, and only when the
// server verified it.
func TestCheckContexts(t *testing.T) {
	ca := securitytest.NewCA(t, "ca")
	envoy1 := ca.Client(t, "spiffe://example.org/envoy/envoy-1")
	l, err := allowlist.New(testRules, allowlist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	grpcPeer := func(cs tls.ConnectionState) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{}, AuthInfo: credentials.TLSInfo{State: cs}})
	}
	unverified := tls.ConnectionState{PeerCertificates: []*x509.Certificate{envoy1.Leaf}}
	tests := []struct {
		name string
		ctx  context.Context
		ok   bool
	}{
		{"grpc, verified", grpcPeer(*verifiedState(envoy1, ca)), true},
		{"grpc, unverified", grpcPeer(unverified), false},
		{"grpc, insecure", peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{}}), false},
		{"http, verified", allowlist.ContextWithConnState(context.Background(), verifiedState(envoy1, ca)), true},
		{"http, unverified", allowlist.ContextWithConnState(context.Background(), &unverified), false},
		{"nothing", context.Background(), false},
	}
	for _, tt := range tests {
		err := l.Check(tt.ctx, node("envoy-1", "edge"))
		if (err == nil) != tt.ok {
			t.Errorf("%s: Check = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	if n := l.Rejected()[allowlist.NoCertificate]; n != 4 {
		t.Errorf("no_certificate rejections %d, want 4", n)
	}
	var nilList *allowlist.List
	if err := nilList.Check(context.Background(), nil); err != nil {
		t.Errorf("a nil List refused: %v", err)
	}
}

func TestHTTPMiddleware(t *testing.T) {
	ca := securitytest.NewCA(t, "ca")
	envoy1 := ca.Client(t, "spiffe://example.org/envoy/envoy-1")
	l, err := allowlist.New(testRules, allowlist.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var seen string
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		if r.Body != nil {
			buf := make([]byte, 1024)
			n, _ := r.Body.Read(buf)
			b.Write(buf[:n])
		}
		seen = b.String()
		if _, ok := allowlist.PeerIdentity(r.Context()); !ok && r.TLS != nil {
			t.Error("next: no identity in the request's context")
		}
		w.WriteHeader(http.StatusTeapot)
	})
	h := l.HTTPMiddleware(next, 100)
	body := `{"node":{"id":"envoy-1","cluster":"edge"}}`
	tests := []struct {
		name   string
		method string
		body   string
		tls    *tls.ConnectionState
		code   int
		says   string
	}{
		{"allowed", http.MethodPost, body, verifiedState(envoy1, ca), http.StatusTeapot, ""},
		{"other node", http.MethodPost, `{"node":{"id":"envoy-2","cluster":"edge"}}`, verifiedState(envoy1, ca), http.StatusForbidden, `may not connect as node "envoy-2"`},
		{"no node", http.MethodPost, `{}`, verifiedState(envoy1, ca), http.StatusForbidden, "sent no node"},
		{"no certificate", http.MethodPost, body, nil, http.StatusForbidden, "verified client certificate is required"},
		{"not JSON", http.MethodPost, `{"node":`, verifiedState(envoy1, ca), http.StatusBadRequest, "cannot parse"},
		{"unknown field", http.MethodPost, `{"nod":{}}`, verifiedState(envoy1, ca), http.StatusBadRequest, "cannot parse"},
		{"too large", http.MethodPost, `{"node":{"id":"` + strings.Repeat("x", 200) + `"}}`, verifiedState(envoy1, ca), http.StatusRequestEntityTooLarge, "larger than 100 bytes"},
		{"GET goes to next", http.MethodGet, "", nil, http.StatusTeapot, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen = ""
			r := httptest.NewRequest(tt.method, "/v3/discovery:clusters", strings.NewReader(tt.body))
			r.TLS = tt.tls
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.code || !strings.Contains(w.Body.String(), tt.says) {
				t.Fatalf("got %d %q, want %d saying %q", w.Code, w.Body, tt.code, tt.says)
			}
			if tt.code == http.StatusTeapot && seen != tt.body {
				t.Errorf("next read body %q, want %q", seen, tt.body)
			}
		})
	}
}
