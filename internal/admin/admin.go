// Package admin serves xdsbridge's operator endpoints: health, readiness,
// and debug views of what is served and where it came from.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/internal/host"
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
}

// Server is the admin HTTP server.
type Server struct {
	opts Options

	mu      sync.Mutex
	addr    net.Addr
	started chan struct{}
}

// New returns an admin Server.
func New(opts Options) *Server { return &Server{opts: opts, started: make(chan struct{})} }

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
	mux.HandleFunc("GET /debug/resources", s.resources)
	mux.HandleFunc("GET /debug/sources", s.sources)
	return mux
}

// resource is one served resource in /debug/resources.
type resource struct {
	Type     string          `json:"type"`
	Name     string          `json:"name"`
	Version  string          `json:"version"`
	Sources  []string        `json:"sources"`
	Resource json.RawMessage `json:"resource"`
}

func (s *Server) resources(w http.ResponseWriter, r *http.Request) {
	entries := s.opts.Store.Entries()
	out := struct {
		Versions  map[string]string `json:"versions"`
		Resources []resource        `json:"resources"`
	}{Versions: map[string]string{}, Resources: make([]resource, 0, len(entries))}
	typeFilter := r.URL.Query().Get("type")
	for _, e := range entries {
		if _, ok := out.Versions[e.TypeURL]; !ok {
			out.Versions[e.TypeURL] = s.opts.Store.TypeVersion(e.TypeURL)
		}
		if typeFilter != "" && typeFilter != e.TypeURL && typeFilter != shortType(e.TypeURL) {
			continue
		}
		b, err := protojson.Marshal(e.Resource)
		if err != nil {
			b, _ = json.Marshal(map[string]string{"error": err.Error()})
		}
		out.Resources = append(out.Resources, resource{Type: e.TypeURL, Name: e.Name, Version: e.Version, Sources: e.Sources, Resource: b})
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

func (s *Server) sources(w http.ResponseWriter, _ *http.Request) {
	type source struct {
		host.Status
		FullState bool `json:"full_state_received"`
		Clusters  int  `json:"clusters"`
	}
	agg := s.opts.Aggregator.SourceStatuses()
	var out []source
	for _, st := range s.opts.Host.Statuses() {
		a := agg[st.Name]
		out = append(out, source{Status: st, FullState: a.Full, Clusters: a.Clusters})
	}
	writeJSON(w, map[string]any{"sources": out, "rejected": s.opts.Aggregator.Rejected()})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", s.opts.Address)
	if err != nil {
		return fmt.Errorf("admin: listen: %w", err)
	}
	s.mu.Lock()
	s.addr = l.Addr()
	s.mu.Unlock()
	close(s.started)
	s.opts.Logger.Info("serving admin", "address", l.Addr().String())
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
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
