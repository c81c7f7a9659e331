package admin

import (
	"bytes"
	"cmp"
	"embed"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"gopkg.in/yaml.v3"

	"github.com/xdsbridge/xdsbridge/xds/conns"
	"github.com/xdsbridge/xdsbridge/xds/store"
)

// The status page: HTML views of what /debug/sources, /debug/clients and
// /debug/resources serve as JSON, read from the same functions.

//go:embed templates/*.html
var templateFS embed.FS

// pages are the status page's templates, each with the layout.
var pages = func() map[string]*template.Template {
	funcs := template.FuncMap{"short": shortType, "ago": ago, "when": when, "count": count, "typeTable": newTypeTable}
	out := map[string]*template.Template{}
	for _, name := range []string{"overview", "clients", "resources", "resource"} {
		out[name] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
	return out
}()

const (
	// defaultRefresh is the auto-refresh period the toggle turns on.
	defaultRefresh = 10
	// maxRefresh bounds ?refresh=, in seconds.
	maxRefresh = 3600
	// maxResourceRows bounds the resources listed on one page.
	maxResourceRows = 500
	// maxRecentNACKs bounds the latest NACKs on the overview.
	maxRecentNACKs = 10
	// maxNames bounds the subscribed names shown per type.
	maxNames = 50
)

// page is what every view has: the request's path and query, for links
// that keep auto-refresh, and the refresh period (0: off).
type page struct {
	Title   string
	Nav     string
	Path    string
	Refresh int
	query   url.Values
	// Bridge is xdsbridge's own version.
	Bridge string
}

func (s *Server) newPage(r *http.Request, title, nav string) page {
	q := r.URL.Query()
	p := page{Title: title, Nav: nav, Path: r.URL.Path, query: q, Bridge: cmp.Or(s.opts.Version, "unknown")}
	if n, err := strconv.Atoi(q.Get("refresh")); err == nil && n > 0 {
		p.Refresh = min(n, maxRefresh)
	}
	return p
}

// Link is path with the query given as name, value pairs (empty values
// left out) and the page's refresh period.
func (p page) Link(path string, kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	if p.Refresh > 0 {
		q.Set("refresh", strconv.Itoa(p.Refresh))
	}
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// ToggleRefresh is this page with auto-refresh turned on or off.
func (p page) ToggleRefresh() string {
	q := maps.Clone(p.query)
	if q == nil {
		q = url.Values{}
	}
	if p.Refresh > 0 {
		q.Del("refresh")
	} else {
		q.Set("refresh", strconv.Itoa(defaultRefresh))
	}
	if len(q) == 0 {
		return p.Path
	}
	return p.Path + "?" + q.Encode()
}

func (s *Server) render(w http.ResponseWriter, name string, data any) {
	var buf bytes.Buffer
	if err := pages[name].Execute(&buf, data); err != nil {
		s.opts.Logger.Error("status page", "page", name, "err", err)
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	// Nothing on the page runs: no script, no frame, styles inline.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	_, _ = buf.WriteTo(w)
}

// sourceRow is a source with the NACKs attributed to it in the window.
type sourceRow struct {
	source
	NACKs float64
}

// typeRow is one resource type: its version and how many resources.
type typeRow struct {
	TypeURL, Version string
	Resources        int
}

// typeRows are the types of entries with their versions and counts,
// sorted by type URL.
func (s *Server) typeRows(entries []store.Entry) []typeRow {
	versions := s.typeVersions(entries)
	counts := map[string]int{}
	for _, e := range entries {
		counts[e.TypeURL]++
	}
	out := make([]typeRow, 0, len(versions))
	for _, t := range slices.Sorted(maps.Keys(versions)) {
		out = append(out, typeRow{TypeURL: t, Version: versions[t], Resources: counts[t]})
	}
	return out
}

// countRow is a count of connected clients or streams.
type countRow struct {
	Name  string
	Count int
}

// nackEvent is a client's latest NACK of a type.
type nackEvent struct {
	Node, Transport, TypeURL string
	conns.NACKInfo
}

type overviewPage struct {
	page
	Ready       bool
	Started     time.Time
	Uptime      time.Duration
	Sources     []sourceRow
	Rejected    []countRow
	Connections int
	Clients     []countRow
	Streams     []countRow
	Types       []typeRow
	NACKs       []nackCount
	// NACKing counts the connected clients whose latest NACK of some type
	// is in the window; RecentNACKs are the latest of those NACKs.
	NACKing     int
	RecentNACKs []nackEvent
	// NACKsUnknown says that the NACK counter could not be read.
	NACKsUnknown bool
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	p := overviewPage{page: s.newPage(r, "Overview", "overview")}
	select {
	case <-s.opts.Ready:
		p.Ready = true
	default:
	}
	g, err := gather(s.opts.Metrics)
	if err != nil {
		s.opts.Logger.Warn("status page: reading metrics", "err", err)
	}
	p.Started = cmp.Or(g.started, s.created)
	p.Uptime = now.Sub(p.Started).Round(time.Second)
	p.NACKsUnknown = s.opts.Metrics == nil
	nacks := s.nacks.within(nackSample{at: now, counts: g.nacks})
	perSource := map[string]float64{}
	for k, v := range nacks {
		perSource[k.Source] += v
	}
	p.NACKs = sortedNACKs(nacks)
	for _, src := range s.sourceList() {
		p.Sources = append(p.Sources, sourceRow{source: src, NACKs: perSource[src.Name]})
	}
	rejected := s.opts.Aggregator.Rejected()
	for _, reason := range slices.Sorted(maps.Keys(rejected)) {
		p.Rejected = append(p.Rejected, countRow{reason, int(rejected[reason])})
	}
	p.Types = s.typeRows(s.opts.Store.Entries())
	if s.opts.Clients != nil {
		st := s.opts.Clients.Stats()
		p.Connections = st.Connections
		for _, k := range slices.SortedFunc(maps.Keys(st.Clients), func(a, b conns.ClientKey) int {
			return cmp.Or(cmp.Compare(a.Transport, b.Transport), cmp.Compare(a.Client, b.Client))
		}) {
			p.Clients = append(p.Clients, countRow{k.Transport + " · " + k.Client, st.Clients[k]})
		}
		for _, k := range conns.Kinds() {
			if n := st.Streams[k]; n > 0 {
				p.Streams = append(p.Streams, countRow{k.String(), n})
			}
		}
		recent := recentNACKs(s.opts.Clients.Snapshot(""), now.Add(-nackWindow))
		nodes := map[string]bool{}
		for _, e := range recent {
			nodes[e.Node] = true
		}
		p.NACKing = len(nodes)
		p.RecentNACKs = recent[:min(len(recent), maxRecentNACKs)]
	}
	s.render(w, "overview", p)
}

// recentNACKs are the latest NACK of every connected client and type
// since from, newest first.
func recentNACKs(snap conns.Snapshot, from time.Time) []nackEvent {
	var out []nackEvent
	add := func(node, transport string, types []conns.TypeView) {
		for _, tv := range types {
			if n := tv.LastNACK; n != nil && !n.At.Before(from) {
				out = append(out, nackEvent{Node: node, Transport: transport, TypeURL: tv.TypeURL, NACKInfo: *n})
			}
		}
	}
	for _, c := range snap.Connections {
		for _, st := range c.Streams {
			add(st.NodeID, st.Kind.String(), st.Types)
		}
	}
	for _, rc := range snap.REST {
		id := ""
		if rc.Node != nil {
			id = rc.Node.ID
		}
		add(id, "rest", rc.Types)
	}
	slices.SortStableFunc(out, func(a, b nackEvent) int { return b.At.Compare(a.At) })
	return out
}

type clientsPage struct {
	page
	Node     string
	Snapshot conns.Snapshot
}

// typeTable is a stream's or REST client's types, with at most Max
// subscribed names listed per type.
type typeTable struct {
	Types []conns.TypeView
	Max   int
}

func newTypeTable(types []conns.TypeView) typeTable { return typeTable{Types: types, Max: maxNames} }

func (s *Server) clientsPage(w http.ResponseWriter, r *http.Request) {
	if s.opts.Clients == nil {
		http.Error(w, "no connection registry", http.StatusNotFound)
		return
	}
	p := clientsPage{page: s.newPage(r, "Clients", "clients"), Node: strings.TrimSpace(r.URL.Query().Get("node"))}
	if p.Node != "" {
		p.Title = "Client " + p.Node
	}
	p.Snapshot = s.opts.Clients.Snapshot(p.Node)
	s.render(w, "clients", p)
}

// resourceRow is one served resource in the list.
type resourceRow struct {
	TypeURL, Name, Version string
	Sources                []string
}

type resourcesPage struct {
	page
	Filter    resourceFilter
	Types     []typeRow
	Resources []resourceRow
	// Matched counts the matching resources; at most maxResourceRows are
	// listed.
	Matched int
}

func (s *Server) resourcesPage(w http.ResponseWriter, r *http.Request) {
	p := resourcesPage{page: s.newPage(r, "Resources", "resources"), Filter: resourceFilterOf(r.URL.Query())}
	entries := s.opts.Store.Entries()
	p.Types = s.typeRows(entries)
	for _, e := range entries {
		if !p.Filter.match(e) {
			continue
		}
		p.Matched++
		if len(p.Resources) < maxResourceRows {
			p.Resources = append(p.Resources, resourceRow{TypeURL: e.TypeURL, Name: e.Name, Version: e.Version, Sources: e.Sources})
		}
	}
	s.render(w, "resources", p)
}

type resourcePage struct {
	page
	store.Entry
	TypeVersion string
	YAML        string
}

// resourcePage shows one resource, ?type=URL&name=NAME, as YAML.
func (s *Server) resourcePage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	e, ok := s.opts.Store.Lookup(q.Get("type"), q.Get("name"))
	if !ok {
		http.Error(w, fmt.Sprintf("no %s named %q is served", q.Get("type"), q.Get("name")), http.StatusNotFound)
		return
	}
	p := resourcePage{page: s.newPage(r, e.Name, "resources"), Entry: e, TypeVersion: s.opts.Store.TypeVersion(e.TypeURL)}
	y, err := protoYAML(e)
	if err != nil {
		y = "# " + err.Error()
	}
	p.YAML = y
	s.render(w, "resource", p)
}

// protoYAML renders a resource as YAML: its protojson, re-encoded in block
// style with the field order kept.
func protoYAML(e store.Entry) (string, error) {
	b, err := protojson.Marshal(e.Resource)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", e.TypeURL, e.Name, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return "", fmt.Errorf("%s %s: %w", e.TypeURL, e.Name, err)
	}
	blockStyle(&doc)
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return "", fmt.Errorf("%s %s: %w", e.TypeURL, e.Name, err)
	}
	return out.String(), enc.Close()
}

// blockStyle drops the JSON styles (flow collections, quoted strings); the
// encoder quotes what would otherwise read as another type.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// ago says how long ago t was, to the second; "never" for the zero time.
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t).Round(time.Second)
	if d < time.Second {
		return "just now"
	}
	return d.String() + " ago"
}

// when is t in UTC, to the second.
func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// count formats a counter value.
func count(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
