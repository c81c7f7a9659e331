package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"golang.org/x/net/html"

	"github.com/xdsbridge/xdsbridge/xds/conns"
)

// chromiumBin is the headless browser for the status page: $XDSBRIDGE_CHROMIUM
// (make test sets it from test/tools/chromium.sh), else chromium on PATH.
// Without one the test is skipped, unless XDSBRIDGE_REQUIRE_PEERS is set.
func chromiumBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs chromium; skipped with -short")
	}
	if bin := os.Getenv("XDSBRIDGE_CHROMIUM"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("XDSBRIDGE_CHROMIUM=%q: %v", bin, err)
		}
		return bin
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if bin, err := exec.LookPath(name); err == nil {
			return bin
		}
	}
	msg := "needs chromium: run `bash test/tools/chromium.sh` and export its output as XDSBRIDGE_CHROMIUM"
	if os.Getenv("XDSBRIDGE_REQUIRE_PEERS") != "" {
		t.Fatal("XDSBRIDGE_REQUIRE_PEERS is set: " + msg)
	}
	t.Skip(msg)
	return ""
}

// dumpDOM loads url in a fresh headless chromium and returns the DOM it
// rendered, parsed.
func dumpDOM(t *testing.T, bin, url string) *html.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--dump-dom", url)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom %s: %v\n%s", url, err, stderr.String())
	}
	doc, err := html.Parse(strings.NewReader(string(out)))
	if err != nil {
		t.Fatalf("parse the DOM of %s: %v\n%s", url, err, out)
	}
	return doc
}

// dom is a rendered page.
type dom struct {
	t    *testing.T
	url  string
	root *html.Node
}

// find returns the elements named tag, in document order.
func (d dom) find(tag string) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == tag {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(d.root)
	return out
}

// text is the text of n and its descendants.
func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// hasText fails the test unless an element named tag has exactly want as
// its text.
func (d dom) hasText(tag, want string) {
	d.t.Helper()
	for _, n := range d.find(tag) {
		if strings.TrimSpace(text(n)) == want {
			return
		}
	}
	d.t.Errorf("%s: no <%s> reads %q", d.url, tag, want)
}

// contains fails the test unless the page's text holds want.
func (d dom) contains(want string) {
	d.t.Helper()
	if !strings.Contains(text(d.root), want) {
		d.t.Errorf("%s: the page does not read %q", d.url, want)
	}
}

// hasRow fails the test unless a table row has exactly cells as its
// cells' text.
func (d dom) hasRow(cells ...string) {
	d.t.Helper()
next:
	for _, tr := range d.find("tr") {
		var got []string
		for c := tr.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == html.ElementNode && (c.Data == "td" || c.Data == "th") {
				got = append(got, strings.TrimSpace(text(c)))
			}
		}
		if len(got) != len(cells) {
			continue
		}
		for i := range cells {
			if got[i] != cells[i] {
				continue next
			}
		}
		return
	}
	d.t.Errorf("%s: no table row reads %q", d.url, cells)
}

// noScript fails the test if the page has a script element at all.
func (d dom) noScript() {
	d.t.Helper()
	for _, n := range d.find("script") {
		d.t.Errorf("%s: a <script> element: %q", d.url, text(n))
	}
}

const scriptCluster = `<script>alert(1)</script>`

// The status page in a real browser: bin/xdsbridge serving a static file
// with a cluster named like a script, behind an admin token, with a
// client that ACKed the clusters and NACKed an endpoint assignment. The
// browser logs in with ?token= on each page; the rendered DOM shows the
// source, the node and the clusters, and the script-named cluster only as
// text.
func TestStatusPageInBrowser(t *testing.T) {
	bin := chromiumBin(t)
	b := &bridge{t: t, dir: t.TempDir(), grpcAddr: freePort(t), adminAddr: freePort(t), log: &syncBuffer{}, done: make(chan struct{})}
	const token = "status-page-e2e-token-0123"
	b.write("admin.token", token+"\n")
	b.write("plugins.yaml", "xds:\n  grpc_address: "+b.grpcAddr+"\n  rest_address: \"\"\nadmin:\n  address: "+b.adminAddr+"\n  token_file: admin.token\n"+staticPlugins)
	b.write("clusters.yaml", `clusters:
  - name: "`+scriptCluster+`"
    endpoints:
      - {address: 127.0.0.1, port: 8080}
  - name: payments
    endpoints:
      - {address: 127.0.0.1, port: 8081, locality: {region: eu-west, zone: a}}
`)
	b.start()

	const node = "status-e2e-node"
	s := newSotw(t, dial(t, b.grpcAddr), node)
	s.subscribe(resource.ClusterType)
	s.ack(s.recvType(resource.ClusterType, 10*time.Second))
	s.subscribe(resource.EndpointType, "payments")
	s.nack(s.recvType(resource.EndpointType, 10*time.Second), "payments")
	eventually(t, 10*time.Second, "the NACK in /debug/clients", func() bool {
		snap := getWithToken[conns.Snapshot](t, b, "/debug/clients?node="+node, token)
		for _, c := range snap.Connections {
			for _, st := range c.Streams {
				for _, tv := range st.Types {
					if tv.LastNACK != nil {
						return true
					}
				}
			}
		}
		return false
	})

	base := "http://" + b.adminAddr
	load := func(path string) dom {
		t.Helper()
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		d := dom{t: t, url: path, root: dumpDOM(t, bin, base+path+sep+"token="+token)}
		d.noScript()
		if strings.Contains(text(d.root), token) {
			t.Errorf("%s: the page shows the token", path)
		}
		return d
	}

	// Without the token, a form asks for it.
	login := dom{t: t, url: "/", root: dumpDOM(t, bin, base+"/")}
	login.contains("A valid admin token is required")
	if len(login.find("form")) != 1 {
		t.Errorf("/ without the token: no login form")
	}

	overview := load("/")
	overview.hasText("h1", "Overview")
	overview.hasText("strong", "files") // the source
	overview.contains("ready")
	overview.contains("grpc · unknown") // the client, by transport and kind
	overview.contains("e2e: rejected on purpose")
	overview.hasText("a", node) // the latest NACK links to its node
	// The NACK counter, attributed to the source.
	overview.hasRow("ClusterLoadAssignment", "files", "1")

	clients := load("/clients?node=" + node)
	clients.hasText("h1", "Client "+node)
	clients.contains("Stream 1 · sotw_ads")
	clients.hasText("li", "payments") // the EDS subscription
	clients.contains("code 3: e2e: rejected on purpose")

	list := load("/resources?type=Cluster")
	list.hasText("a", "payments")
	list.hasText("a", scriptCluster)

	res := load("/resource?type=" + url.QueryEscape(resource.ClusterType) + "&name=" + url.QueryEscape(scriptCluster))
	res.hasText("h1", scriptCluster)
	res.hasText("strong", "files")
	res.contains("name: " + scriptCluster)

	eds := load("/resource?type=" + url.QueryEscape(resource.EndpointType) + "&name=payments")
	eds.hasText("h1", "payments")
	eds.contains("region: eu-west")
	eds.contains("portValue: 8081")
}

// getWithToken fetches an admin JSON endpoint with the bearer token.
func getWithToken[T any](t *testing.T, b *bridge, path, token string) T {
	t.Helper()
	var v T
	req, err := http.NewRequest(http.MethodGet, "http://"+b.adminAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return v
}
