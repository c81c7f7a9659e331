package xds

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/rest/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/internal/publish"
	"github.com/xdsbridge/xdsbridge/xds/store"
)

// restStore returns a store holding n clusters of endpoints endpoints each.
func restStore(tb testing.TB, n, endpoints int) *store.Store {
	tb.Helper()
	logger := slog.New(slog.DiscardHandler)
	st := store.New(logger)
	change := &aggregator.Change{}
	for i := range n {
		ports := make([]uint32, endpoints)
		for p := range ports {
			ports[p] = uint32(8000 + p)
		}
		change.Clusters = append(change.Clusters, cluster(fmt.Sprintf("cluster-%04d", i), ports...))
	}
	(&publish.Publisher{Store: st, Logger: logger}).Publish(tb.Context(), change)
	return st
}

func clusterNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("cluster-%04d", i)
	}
	return out
}

// TestRESTJSONIsProtojson checks that the REST body is, byte for byte,
// what protojson (as go-control-plane's gateway calls it) makes of the
// same DiscoveryResponse: clusters (as stored and as rewritten for REST
// clients), endpoints by name and every one, empty responses, and a
// response with every envelope field set; twice each, the second time from
// the cache.
func TestRESTJSONIsProtojson(t *testing.T) {
	st := restStore(t, 20, 3)
	fetchers := map[string]cache.ConfigFetcher{
		"store":        st,
		"rest-rewrite": newRESTClusters(st, "xdsbridge-rest"),
	}
	requests := []*discovery.DiscoveryRequest{
		{TypeUrl: resource.ClusterType},
		{TypeUrl: resource.EndpointType},
		{TypeUrl: resource.EndpointType, ResourceNames: []string{"cluster-0003", "cluster-0011", "missing"}},
		{TypeUrl: resource.EndpointType, ResourceNames: []string{"missing"}},
		{TypeUrl: resource.ListenerType},
	}
	j := newRESTJSON()
	check := func(t *testing.T, resp *discovery.DiscoveryResponse) {
		t.Helper()
		want, err := restMarshal.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		for pass := range 2 {
			got, err := j.marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("pass %d: REST JSON differs from protojson's\n got %s\nwant %s", pass, got, want)
			}
		}
	}
	for name, f := range fetchers {
		for _, req := range requests {
			t.Run(fmt.Sprintf("%s/%s/%d", name, req.GetTypeUrl()[strings.LastIndex(req.GetTypeUrl(), ".")+1:], len(req.GetResourceNames())), func(t *testing.T) {
				resp, err := rest.NewServer(f, nil).Fetch(t.Context(), req)
				if err != nil {
					t.Fatal(err)
				}
				check(t, resp)
			})
		}
	}
	t.Run("every envelope field", func(t *testing.T) {
		resp, err := rest.NewServer(st, nil).Fetch(t.Context(), &discovery.DiscoveryRequest{TypeUrl: resource.ClusterType})
		if err != nil {
			t.Fatal(err)
		}
		full := &discovery.DiscoveryResponse{
			VersionInfo:  `v"1\u2028[{}]`,
			Resources:    resp.GetResources(),
			Canary:       true,
			TypeUrl:      resp.GetTypeUrl(),
			Nonce:        `"resources":[{}]`,
			ControlPlane: &corev3.ControlPlane{Identifier: "xdsbridge"},
		}
		check(t, full)
		one := &discovery.DiscoveryResponse{Resources: resp.GetResources()[:1]}
		check(t, one)
	})
}

// TestRESTJSONForgets checks that the cache keeps a resource's JSON while
// it is served and drops it once it has not been for a whole generation.
func TestRESTJSONForgets(t *testing.T) {
	j := newRESTJSON()
	fetch := func(st *store.Store) *discovery.DiscoveryResponse {
		t.Helper()
		resp, err := rest.NewServer(st, nil).Fetch(t.Context(), &discovery.DiscoveryRequest{TypeUrl: resource.EndpointType})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.marshal(resp); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	older := func() { j.rotated = j.rotated.Add(-restJSONGeneration) }
	first, second := restStore(t, 10, 2), restStore(t, 4, 2)
	fetch(first)
	if n := j.size(); n != 10 {
		t.Fatalf("%d entries, want 10", n)
	}
	older()
	fetch(second) // a new generation: first's are kept for one more
	if n := j.size(); n != 14 {
		t.Fatalf("%d entries a generation on, want 14", n)
	}
	fetch(first) // served again: kept
	older()
	fetch(second) // first's, unserved for a generation, stay for one more
	older()
	fetch(second)
	if n := j.size(); n != 4 {
		t.Fatalf("%d entries after two generations without the first store's, want 4", n)
	}
}

// TestRESTGatewayAnswers checks the gateway against go-control-plane's on
// the same requests: status, error text and body.
func TestRESTGatewayAnswers(t *testing.T) {
	st := restStore(t, 5, 2)
	srv := serverv3.NewServerAdvanced(rest.NewServer(st, nil), nil, nil)
	ours, theirs := newRESTGateway(srv), &serverv3.HTTPGateway{Server: srv}
	cds, err := rest.NewServer(st, nil).Fetch(t.Context(), &discovery.DiscoveryRequest{TypeUrl: resource.ClusterType})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, body string }{
		{"/v3/discovery:clusters", `{"node": {"id": "n"}}`},
		{"/v3/discovery:clusters", fmt.Sprintf(`{"version_info": %q}`, cds.GetVersionInfo())},
		{"/v3/discovery:endpoints", `{"resource_names": ["cluster-0001", "cluster-0004"]}`},
		{"/v3/discovery:endpoints", `{"resource_names": ["nothing"]}`},
		{"/v3/discovery:listeners", `{}`},
		{"/v3/discovery:clusters/../endpoints", `{}`},
		{"/v3/discovery:nothing", `{}`},
		{"/v3/discovery:clusters", `{not json`},
		{"/v3/discovery:clusters", `{"resource_names": "a"}`},
	} {
		t.Run(c.path+" "+c.body, func(t *testing.T) {
			do := func(gw interface {
				ServeHTTP(*http.Request) ([]byte, int, error)
			}) ([]byte, int, string) {
				req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, c.path, strings.NewReader(c.body))
				b, code, err := gw.ServeHTTP(req)
				msg := ""
				if err != nil {
					msg = err.Error()
				}
				return b, code, msg
			}
			gb, gc, gm := do(ours)
			wb, wc, wm := do(theirs)
			if gc != wc || gm != wm || !bytes.Equal(gb, wb) {
				t.Fatalf("ours: %d %q %s\ngo-control-plane's: %d %q %s", gc, gm, gb, wc, wm, wb)
			}
		})
	}
}

// BenchmarkRESTPoll is one REST poll for the endpoints of 1,000 clusters
// of 10 endpoints each, through go-control-plane's gateway (protojson of
// every resource on every poll) and through xdsbridge's (each resource's
// JSON encoded once per version). The ratio of the two is the saving.
func BenchmarkRESTPoll(b *testing.B) {
	st := restStore(b, 1000, 10)
	srv := serverv3.NewServerAdvanced(rest.NewServer(st, nil), nil, nil)
	body, err := protojson.Marshal(&discovery.DiscoveryRequest{Node: &corev3.Node{Id: "poller"}, ResourceNames: clusterNames(1000)})
	if err != nil {
		b.Fatal(err)
	}
	for _, gw := range []struct {
		name string
		gw   interface {
			ServeHTTP(*http.Request) ([]byte, int, error)
		}
	}{
		{"go-control-plane", &serverv3.HTTPGateway{Server: srv}},
		{"cached", newRESTGateway(srv)},
	} {
		b.Run(gw.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequestWithContext(b.Context(), http.MethodPost, resource.FetchEndpoints, bytes.NewReader(body))
				out, code, err := gw.gw.ServeHTTP(req)
				if err != nil || code != http.StatusOK {
					b.Fatalf("%d: %v", code, err)
				}
				b.SetBytes(int64(len(out)))
			}
		})
	}
}
