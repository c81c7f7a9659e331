// Package admin serves xdsbridge's operator endpoints: health, readiness,
// Prometheus metrics, profiles (when enabled), and debug views of what is served, where it
// came from, and who is connected — as JSON under /debug/ and as a status page for people
// at /.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/internal/host"
	"github.com/xdsbridge/xdsbridge/internal/security/adminauth"
	"github.com/xdsbridge/xdsbridge/xds/conns"
	"github.com/xdsbridge/xdsbridge/xds/store"
)

// Options are what the admin endpoints read from.
type Options struct {
	Logger     *slog.Logger
	Address    string
	Ready      <-chan struct{}
	Store      *store.Store
	Host       *host.Host
	Aggregator *aggregator.Aggregator
	// Clients is the xDS connection registry behind /debug/clients.
	Clients *conns.Registry
	// Metrics is what /metrics serves.
	Metrics prometheus.Gatherer
	// Token, when set, is required on every endpoint but /healthz and
	// /readyz. Run refuses a non-loopback Address without it.
	Token *adminauth.Token
	// PProf serves /debug/pprof/.
	PProf bool
	// Version is xdsbridge's, for the status page.
	Version string
	// Replaced, when set, returns the generated gRPC listeners and routes
	// that passthrough resources of the same type and name replace, each
	// with its cluster: /debug/resources shows them on the passthrough
	// resource.
	Replaced func() map[store.Ref]string
}

// Server is the admin HTTP server.
type Server struct {
	opts Options

	// created stands in for the process's start time when the metrics
	// do not have it.
	created time.Time
	// nacks holds samples of the NACK counter, which Run takes.
	nacks nackHistory

	mu      sync.Mutex
	addr    net.Addr
	started chan struct{}
}

// New returns an admin Server.
func New(opts Options) *Server {
	return &Server{opts: opts, created: time.Now(), started: make(chan struct{})}
}

// Addr returns the bound address once Run has bound it.
func (s *Server) Addr(ctx context.Context) (net.Addr, error) {
	select {
	case <-s.started:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr, nil
}

// Handler returns the admin endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-s.opts.Ready:
			fmt.Fprintln(w, "ready")
		default:
			http.Error(w, "not ready: waiting for every source's first full state", http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("GET /{$}", s.overview)
	mux.HandleFunc("GET /clients", s.clientsPage)
	mux.HandleFunc("GET /resources", s.resourcesPage)
	mux.HandleFunc("GET /resource", s.resourcePage)
	mux.HandleFunc("GET /debug/resources", s.resources)
	mux.HandleFunc("GET /debug/sources", s.sources)
	mux.HandleFunc("GET /debug/clients", s.clients)
	if s.opts.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Metrics, promhttp.HandlerOpts{}))
	}
	if s.opts.PProf {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	if s.opts.Token != nil {
		return s.opts.Token.Require(mux, "/healthz", "/readyz")
	}
	return mux
}

// clients serves the connection registry; ?node=ID narrows it to a node.
func (s *Server) clients(w http.ResponseWriter, r *http.Request) {
	if s.opts.Clients == nil {
		http.Error(w, "no connection registry", http.StatusNotFound)
		return
	}
	writeJSON(w, s.opts.Clients.Snapshot(r.URL.Query().Get("node")))
}

// resource is one served resource in /debug/resources.
type resource struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Version string   `json:"version"`
	Sources []string `json:"sources"`
	// Replaces says which generated gRPC resource this passthrough one
	// is served instead of.
	Replaces string          `json:"replaces,omitempty"`
	Resource json.RawMessage `json:"resource"`
}

// resourceFilter narrows the served resources, for /debug/resources and
// the status page alike: Type is a type URL or its message name
// ("Cluster"), Name a part of the resource's name; empty matches all.
type resourceFilter struct{ Type, Name string }

func resourceFilterOf(q url.Values) resourceFilter {
	return resourceFilter{Type: strings.TrimSpace(q.Get("type")), Name: strings.TrimSpace(q.Get("name"))}
}

func (f resourceFilter) match(e store.Entry) bool {
	return (f.Type == "" || f.Type == e.TypeURL || f.Type == shortType(e.TypeURL)) && strings.Contains(e.Name, f.Name)
}

// typeVersions is the version of every type that has resources.
func (s *Server) typeVersions(entries []store.Entry) map[string]string {
	out := map[string]string{}
	for _, e := range entries {
		if _, ok := out[e.TypeURL]; !ok {
			out[e.TypeURL] = s.opts.Store.TypeVersion(e.TypeURL)
		}
	}
	return out
}

// resources serves the served resources as protojson; ?type= and ?name=
// narrow them (see resourceFilter).
func (s *Server) resources(w http.ResponseWriter, r *http.Request) {
	entries := s.opts.Store.Entries()
	out := struct {
		Versions  map[string]string `json:"versions"`
		Resources []resource        `json:"resources"`
	}{Versions: s.typeVersions(entries), Resources: make([]resource, 0, len(entries))}
	f := resourceFilterOf(r.URL.Query())
	var replaced map[store.Ref]string
	if s.opts.Replaced != nil {
		replaced = s.opts.Replaced()
	}
	for _, e := range entries {
		if !f.match(e) {
			continue
		}
		b, err := protojson.Marshal(e.Resource)
		if err != nil {
			b, _ = json.Marshal(map[string]string{"error": err.Error()})
		}
		res := resource{Type: e.TypeURL, Name: e.Name, Version: e.Version, Sources: e.Sources, Resource: b}
		if cluster, ok := replaced[store.Ref{TypeURL: e.TypeURL, Name: e.Name}]; ok {
			res.Replaces = fmt.Sprintf("the generated gRPC %s for cluster %q", shortType(e.TypeURL), cluster)
		}
		out.Resources = append(out.Resources, res)
	}
	writeJSON(w, out)
}

func shortType(typeURL string) string {
	for i := len(typeURL) - 1; i >= 0; i-- {
		if typeURL[i] == '.' {
			return typeURL[i+1:]
		}
	}
	return typeURL
}

// source is one plugin in /debug/sources. Every field is always present.
type source struct {
	Name string `json:"name"`
	// Plugin and Version are what the plugin reports about itself.
	Plugin  string `json:"plugin"`
	Version string `json:"version"`
	// State is the plugin process's: starting, running, backoff, stopped.
	State string    `json:"state"`
	Since time.Time `json:"since"`
	// Pid is the plugin process's id; 0 while it is not running.
	Pid       int    `json:"pid"`
	Restarts  int    `json:"restarts"`
	LastError string `json:"last_error"`
	// LastUpdate is when the plugin last sent data; null before it has.
	LastUpdate *time.Time `json:"last_update"`
	// SourceState is the state the plugin reports for its registry:
	// connected, disconnected or unknown, with SourceReason.
	SourceState  string `json:"source_state"`
	SourceReason string `json:"source_reason"`
	// MaxSilence is how long the source said it may go without sending
	// anything, as a Go duration; "" when it made no promise.
	MaxSilence string `json:"max_silence"`
	// LastProgress is when the running source last sent anything (data,
	// or a status showing it is alive); null while no plugin runs.
	LastProgress *time.Time `json:"last_progress"`
	// Stale is the xdsbridge_source_stale gauge.
	Stale bool `json:"stale"`
	// Connected is the xdsbridge_source_connected_state gauge.
	Connected bool `json:"connected"`
	FullState bool `json:"full_state_received"`
	Clusters  int  `json:"clusters"`
}

func (s *Server) sources(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{"sources": s.sourceList(), "rejected": s.opts.Aggregator.Rejected()})
}

// sourceList is every plugin's state from the host and the aggregator, as
// /debug/sources and the status page show it.
func (s *Server) sourceList() []source {
	agg := s.opts.Aggregator.SourceStatuses()
	out := []source{}
	for _, st := range s.opts.Host.Statuses() {
		a := agg[st.Name]
		src := source{
			Name: st.Name, Plugin: st.Plugin, Version: st.Version, State: st.State, Since: st.Since, Pid: st.Pid,
			Restarts: st.Restarts, LastError: st.LastError, SourceState: st.Source, SourceReason: st.SourceReason,
			Connected: connected(st, a), FullState: a.Full, Clusters: a.Clusters, Stale: st.Stale,
		}
		if st.MaxSilence > 0 {
			src.MaxSilence = st.MaxSilence.String()
		}
		if !st.LastProgress.IsZero() {
			t := st.LastProgress
			src.LastProgress = &t
		}
		if !st.LastUpdate.IsZero() {
			t := st.LastUpdate
			src.LastUpdate = &t
		}
		out = append(out, src)
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// sampleNACKs samples the NACK counter every interval until ctx ends, for
// the status page's count of the last hour.
func (s *Server) sampleNACKs(ctx context.Context, interval time.Duration) {
	if s.opts.Metrics == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			g, err := gather(s.opts.Metrics)
			if err != nil {
				s.opts.Logger.Warn("sampling the NACK counter", "err", err)
			}
			s.nacks.add(nackSample{at: now, counts: g.nacks})
		}
	}
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if err := adminauth.CheckExposure(s.opts.Address, s.opts.Token != nil, false); err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", s.opts.Address)
	if err != nil {
		return fmt.Errorf("admin: listen: %w", err)
	}
	s.mu.Lock()
	s.addr = l.Addr()
	s.mu.Unlock()
	close(s.started)
	s.opts.Logger.Info("serving admin", "address", l.Addr().String(), "token", s.opts.Token != nil, "pprof", s.opts.PProf)
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// Longer than a default 30s CPU profile from /debug/pprof/profile.
		WriteTimeout: 90 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	sctx, stopSampling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopSampling()
	wg.Go(func() { s.sampleNACKs(sctx, nackSampleEvery) })
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("admin: serve: %w", err)
	}
}
