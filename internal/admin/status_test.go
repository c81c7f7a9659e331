package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/xds/conns"
	"github.com/xdsbridge/xdsbridge/xds/store"
)

// evil is a name a registry could hand us.
const evil = `<script>alert(1)</script>`

// serve puts clusters (with one endpoint each) in the store, from source
// "static".
func (f *fixture) serve(t *testing.T, names ...string) {
	t.Helper()
	var items []store.Item
	for i, n := range names {
		items = append(items,
			store.Item{TypeURL: resourcev3.ClusterType, Name: n, Sources: []string{"static"},
				Resource: &clusterv3.Cluster{Name: n, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}}},
			store.Item{TypeURL: resourcev3.EndpointType, Name: n, Sources: []string{"static"},
				Resource: &endpointv3.ClusterLoadAssignment{ClusterName: n, Endpoints: []*endpointv3.LocalityLbEndpoints{{
					LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
							Address: "127.0.0.1", PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(8080 + i)}}}}}}}}}}}})
	}
	if err := f.store.Apply(items, nil); err != nil {
		t.Fatal(err)
	}
}

// connect opens an ADS stream for node that was sent version v1 of the
// clusters and rejected it.
func (f *fixture) connect(node, userAgent string, nack bool) {
	c := f.clients.Open(nil, nil)
	s := c.OpenStream(1, conns.SotWADS, "")
	n := &core.Node{Id: node, Cluster: "edge", UserAgentName: userAgent}
	s.Request(&discovery.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType})
	s.Response(resourcev3.ClusterType, "v1", "n1", 2, 0)
	req := &discovery.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType, VersionInfo: "v1", ResponseNonce: "n1"}
	if nack {
		req.VersionInfo = ""
		req.ErrorDetail = &statuspb.Status{Code: 3, Message: "rejected " + evil}
	}
	s.Request(req)
}

func getPage(t *testing.T, f *fixture, path string) string {
	t.Helper()
	resp, err := http.Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", path, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
	}
	return body
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Every page shows what it is about, filtered as asked, and escapes what
// registries and clients named: no page has a script element.
func TestStatusPages(t *testing.T) {
	f := newFixture(t)
	f.agg.Apply("static", sdk.Update{Full: true, Status: &sdk.Status{State: sdk.Connected}})
	f.serve(t, "payments", "orders", evil)
	f.connect("edge-1", "envoy", false)
	f.connect(evil, "grpc-go", true)
	clusters := url.QueryEscape(resourcev3.ClusterType)
	endpoints := url.QueryEscape(resourcev3.EndpointType)

	tests := []struct {
		name, path string
		want, not  []string
	}{
		{
			name: "overview", path: "/",
			want: []string{"<title>Overview · xdsbridge</title>", "<strong>static</strong>", "<strong>quiet</strong>", "not ready",
				`href="/resources?type=` + clusters + `">Cluster</a>`, "grpc · grpc", "grpc · envoy", "sotw_ads streams",
				// The latest NACK, with its node and detail escaped.
				`<a href="/clients?node=%3Cscript%3Ealert%281%29%3C%2Fscript%3E">&lt;script&gt;alert(1)&lt;/script&gt;</a>`,
				"code 3: rejected &lt;script&gt;alert(1)&lt;/script&gt;",
				// One of the two clients NACKed.
				`<div class="k">Clients NACKing</div><div class="v"><span class="err">1</span></div>`},
		},
		{
			name: "every client", path: "/clients",
			want: []string{`<a href="/clients?node=edge-1">edge-1</a>`, "&lt;script&gt;alert(1)&lt;/script&gt;"},
		},
		{
			name: "one client", path: "/clients?node=edge-1",
			want: []string{"Client <span class=\"mono\">edge-1</span>", "Stream 1 · sotw_ads", "<span class=\"mono\">v1</span>"},
			not:  []string{"rejected"},
		},
		{
			name: "a client that NACKed", path: "/clients?node=" + url.QueryEscape(evil),
			want: []string{"Client <span class=\"mono\">&lt;script&gt;alert(1)&lt;/script&gt;</span>", "code 3: rejected &lt;script&gt;", "grpc-go",
				`<input type="text" name="node" value="&lt;script&gt;alert(1)&lt;/script&gt;"`},
			not: []string{"edge-1"},
		},
		{
			name: "no such client", path: "/clients?node=nobody",
			want: []string{"No client with this node id is connected."},
			not:  []string{"edge-1", "Stream 1"},
		},
		{
			name: "every resource", path: "/resources",
			want: []string{"6 matching", ">payments</a>", ">orders</a>", ">&lt;script&gt;alert(1)&lt;/script&gt;</a>"},
		},
		{
			name: "by type and name", path: "/resources?type=Cluster&name=pay",
			want: []string{"1 matching", `<a href="/resource?name=payments&amp;type=` + clusters + `">payments</a>`,
				`<option value="` + resourcev3.ClusterType + `" selected>`},
			not: []string{">orders</a>", endpoints + `">payments`},
		},
		{
			name: "by full type", path: "/resources?type=" + endpoints,
			want: []string{"3 matching", `type=` + endpoints + `">payments</a>`},
			not:  []string{`type=` + clusters + `">payments</a>`},
		},
		{
			name: "a resource", path: "/resource?type=" + endpoints + "&name=orders",
			want: []string{"<h1 class=\"mono\">orders</h1>", "<strong>static</strong>", "<pre>clusterName: orders\nendpoints:\n  - lbEndpoints:\n",
				"portValue: 8081\n"},
		},
		{
			name: "a resource named like a script", path: "/resource?type=" + clusters + "&name=" + url.QueryEscape(evil),
			want: []string{"<h1 class=\"mono\">&lt;script&gt;alert(1)&lt;/script&gt;</h1>", "<pre>name: &lt;script&gt;alert(1)&lt;/script&gt;\ntype: EDS\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := getPage(t, f, tt.path)
			if strings.Contains(strings.ToLower(body), "<script") {
				t.Errorf("a script element:\n%s", body)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("lacks %s", w)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(body, n) {
					t.Errorf("holds %s", n)
				}
			}
			if t.Failed() {
				t.Logf("GET %s:\n%s", tt.path, body)
			}
		})
	}

	if code, _ := f.get(t, "/resource?type=Cluster&name=payments"); code != http.StatusNotFound {
		t.Errorf("a resource by its short type: %d, want 404 (links carry the type URL)", code)
	}
	if code, _ := f.get(t, "/nothing"); code != http.StatusNotFound {
		t.Errorf("GET /nothing: %d, want 404", code)
	}
}

// The JSON view and the page filter resources with the same rules.
func TestResourcesFilterShared(t *testing.T) {
	f := newFixture(t)
	f.serve(t, "payments", "orders", "payments-canary")
	for _, q := range []string{"", "?type=Cluster", "?name=pay", "?type=ClusterLoadAssignment&name=canary", "?type=" + url.QueryEscape(resourcev3.ClusterType) + "&name=orders", "?type=Listener"} {
		_, body := f.get(t, "/debug/resources"+q)
		var out struct {
			Resources []struct{ Type, Name string }
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		page := getPage(t, f, "/resources"+q)
		if want := fmt.Sprintf("%d matching", len(out.Resources)); !strings.Contains(page, want) {
			t.Errorf("%s: /debug/resources has %d, the page does not say %q", q, len(out.Resources), want)
		}
		for _, r := range out.Resources {
			link := fmt.Sprintf(`<a href="/resource?name=%s&amp;type=%s">`, url.QueryEscape(r.Name), url.QueryEscape(r.Type))
			if !strings.Contains(page, link) {
				t.Errorf("%s: the page lacks %s %s", q, r.Type, r.Name)
			}
		}
	}
}

// A long list is cut at maxResourceRows, and the page says so.
func TestResourcesBounded(t *testing.T) {
	f := newFixture(t)
	names := make([]string, maxResourceRows/2+1)
	for i := range names {
		names[i] = fmt.Sprintf("c%04d", i)
	}
	f.serve(t, names...)
	body := getPage(t, f, "/resources")
	if want := fmt.Sprintf("%d matching, the first %d shown", 2*len(names), maxResourceRows); !strings.Contains(body, want) {
		t.Errorf("lacks %q", want)
	}
	if got := strings.Count(body, `<a href="/resource?`); got != maxResourceRows {
		t.Errorf("%d rows, want %d", got, maxResourceRows)
	}
}

// ?refresh= adds a meta refresh that links keep; the toggle turns it off
// and on.
func TestRefresh(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		path, meta, toggle string
	}{
		{"/", "", `href="/?refresh=10">turn on`},
		{"/?refresh=7", `<meta http-equiv="refresh" content="7">`, `href="/">turn off`},
		{"/clients?node=a&refresh=7", `<meta http-equiv="refresh" content="7">`, `href="/clients?node=a">turn off`},
		{"/clients?node=a", "", `href="/clients?node=a&amp;refresh=10">turn on`},
		{"/?refresh=99999", `<meta http-equiv="refresh" content="3600">`, `href="/">turn off`},
		{"/?refresh=x", "", `turn on`},
		{"/?refresh=-1", "", `turn on`},
	}
	for _, tt := range tests {
		body := getPage(t, f, tt.path)
		if tt.meta == "" && strings.Contains(body, `http-equiv="refresh"`) {
			t.Errorf("%s: refreshes", tt.path)
		}
		if tt.meta != "" && !strings.Contains(body, tt.meta) {
			t.Errorf("%s: lacks %s", tt.path, tt.meta)
		}
		if !strings.Contains(body, tt.toggle) {
			t.Errorf("%s: lacks %s", tt.path, tt.toggle)
		}
		if tt.meta != "" && !strings.Contains(body, `<a href="/resources?refresh=`) {
			t.Errorf("%s: the navigation drops the refresh", tt.path)
		}
	}
}

// With a token, the pages need it; a browser logs in with ?token= and
// then reads them with its cookie.
func TestStatusToken(t *testing.T) {
	const token = testToken
	f := newFixture(t, withToken(t))
	for _, path := range []string{"/", "/clients", "/resources", "/resource?type=x&name=y"} {
		if code, body := f.get(t, path); code != http.StatusUnauthorized || strings.Contains(body, "Overview") {
			t.Errorf("GET %s without the token: %d", path, code)
		}
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(f.srv.URL + "/clients?node=a&token=" + token)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/clients?node=a" || len(resp.Cookies()) != 1 {
		t.Fatalf("login: %s, Location %q, cookies %v", resp.Status, resp.Header.Get("Location"), resp.Cookies())
	}
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/", nil)
	req.AddCookie(resp.Cookies()[0])
	page, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, page)
	if page.StatusCode != http.StatusOK || !strings.Contains(body, "<h1>Overview</h1>") {
		t.Errorf("GET / with the cookie: %s", page.Status)
	}
}

// The count of the last hour is the counter now less the newest sample at
// or before the hour's start; with no sample that old, the counter itself.
func TestNACKHistory(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, b := nackKey{"Cluster", "static"}, nackKey{"Cluster", "dns"}
	sample := func(min int, av, bv float64) nackSample {
		return nackSample{at: t0.Add(time.Duration(min) * time.Minute), counts: map[nackKey]float64{a: av, b: bv}}
	}
	tests := []struct {
		name    string
		samples []nackSample
		now     nackSample
		want    map[nackKey]float64
	}{
		{"no samples: the counter", nil, sample(5, 3, 0), map[nackKey]float64{a: 3}},
		{"young process: the counter", []nackSample{sample(1, 1, 0), sample(30, 2, 0)}, sample(59, 3, 1), map[nackKey]float64{a: 3, b: 1}},
		{"an hour ago is the baseline", []nackSample{sample(0, 5, 1), sample(10, 7, 1), sample(60, 9, 1)}, sample(70, 9, 4), map[nackKey]float64{a: 2, b: 3}},
		{"the newest at or before the start", []nackSample{sample(0, 1, 0), sample(9, 4, 0), sample(11, 6, 0)}, sample(70, 10, 0), map[nackKey]float64{a: 6}},
		{"quiet hour", []nackSample{sample(0, 5, 1)}, sample(120, 5, 1), map[nackKey]float64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h nackHistory
			for _, s := range tt.samples {
				h.add(s)
			}
			got := h.within(tt.now)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("within = %v, want %v", got, tt.want)
			}
		})
	}

	// A day of samples keeps one hour of them and the baseline.
	var h nackHistory
	for i := range 24 * 60 {
		h.add(sample(i, float64(i), 0))
	}
	if len(h.samples) > nackSamples {
		t.Errorf("%d samples kept, want at most %d", len(h.samples), nackSamples)
	}
	if got := h.within(sample(24*60, 24*60, 0))[a]; got != 60 {
		t.Errorf("after a day: %v in the last hour, want 60", got)
	}
}

// The overview counts NACKs per source and type from the NACK counter,
// and Run samples it.
func TestOverviewNACKs(t *testing.T) {
	f := newFixture(t)
	nacks := prometheus.NewCounterVec(prometheus.CounterOpts{Name: nacksMetric, Help: "NACKs"}, []string{"type", "source"})
	f.reg.MustRegister(nacks)
	nacks.WithLabelValues("envoy.config.cluster.v3.Cluster", "static").Add(2)
	nacks.WithLabelValues("envoy.config.endpoint.v3.ClusterLoadAssignment", "").Inc()
	body := getPage(t, f, "/")
	for _, want := range []string{
		`<td>Cluster</td><td>static</td><td class="num">2</td>`,
		`<td>ClusterLoadAssignment</td><td><span class="muted">none</span></td><td class="num">1</td>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %s", want)
		}
	}
	// The static source's row counts its 2.
	if !strings.Contains(body, `<td class="num"><span class="err">2</span></td>`) {
		t.Errorf("the source row does not count its NACKs:\n%s", body)
	}

	s := New(Options{Logger: slog.New(slog.DiscardHandler), Metrics: f.reg})
	done := make(chan struct{})
	sctx, stop := context.WithCancel(t.Context())
	go func() { s.sampleNACKs(sctx, time.Millisecond); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.nacks.mu.Lock()
		n := len(s.nacks.samples)
		s.nacks.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no sample within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	<-done
	s.nacks.mu.Lock()
	got := s.nacks.samples[0].counts[nackKey{"envoy.config.cluster.v3.Cluster", "static"}]
	s.nacks.mu.Unlock()
	if got != 2 {
		t.Errorf("sampled %v, want 2", got)
	}
}

// The YAML keeps protojson's field order and its types: a string that
// reads as a number or a boolean stays a string.
func TestProtoYAML(t *testing.T) {
	for _, tt := range []struct{ name, want string }{
		{"payments", "name: payments\ntype: EDS\nconnectTimeout: 5s\n"},
		{"8080", "name: \"8080\"\ntype: EDS\nconnectTimeout: 5s\n"},
		{"true", "name: \"true\"\ntype: EDS\nconnectTimeout: 5s\n"},
		{"a: b", "name: 'a: b'\ntype: EDS\nconnectTimeout: 5s\n"},
	} {
		c := &clusterv3.Cluster{Name: tt.name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			ConnectTimeout: durationpb.New(5 * time.Second)}
		got, err := protoYAML(store.Entry{TypeURL: resourcev3.ClusterType, Name: tt.name, Resource: c})
		if err != nil || got != tt.want {
			t.Errorf("protoYAML(%q) = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}
