package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"slices"
	"sort"
	"sync/atomic"
	"text/template"

	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/sdk/overlay"
)

// Options carries what a Source needs besides its Config.
type Options struct {
	// Logger receives the source's logs. Default: discard.
	Logger *slog.Logger
	// BaseDir is the directory relative paths in the Config (token_file,
	// tls.*) resolve against. Default: the working directory.
	BaseDir string
	// DialContext opens connections to Consul. Default: a net.Dialer with a
	// 10s timeout. Tests wrap it to count connections.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Source watches the Consul catalog and serves each selected service as a
// cluster. Build one with New; README.md describes its behaviour.
type Source struct {
	log      *slog.Logger
	cfg      Config
	client   *client
	names    *template.Template
	overlays map[string][]byte // by service name
	mapper   mapper
	// healthParams are the per-instance selection parameters of every
	// /v1/health/service query; watchParams add what a dedicated watcher's
	// blocking query needs.
	healthParams url.Values
	watchParams  url.Values
	// checkToken: a token is configured, so the runner checks it is still
	// valid, with one blocking query of the connection budget.
	checkToken bool
	running    atomic.Bool
}

// New builds a Source from a valid cfg. It reads token_file and the TLS
// files, and reaches no server until Run: problems with those files come
// back as an sdk.ConfigErrors naming the field.
func New(cfg Config, opts Options) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c, err := newClient(cfg, opts.BaseDir, opts.DialContext)
	if err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	names, _ := parseClusterName(cfg.ClusterName) // checked by Validate
	overlays := map[string][]byte{}
	for name, fields := range cfg.Overlays {
		ov, _ := overlay.Parse(fields) // checked by Validate
		if ov != nil {
			overlays[name] = ov
		}
	}
	params := url.Values{}
	for _, t := range cfg.Tags {
		params.Add("tag", t)
	}
	if cfg.Filter != "" {
		params.Set("filter", cfg.Filter)
	}
	// near makes the agent forward a dedicated watcher's blocking query to
	// the servers instead of answering it from its streaming view, which
	// outlives a restart of those servers and then answers with the state
	// from before it, under indexes they have not reached (README.md,
	// "Connections to Consul"). Endpoints are sorted by the mapping anyway.
	watch := maps.Clone(params)
	watch.Set("near", "_agent")
	return &Source{
		log:          opts.Logger,
		cfg:          cfg,
		client:       c,
		names:        names,
		overlays:     overlays,
		mapper:       mapper{health: cfg.Health, zoneKey: cfg.Locality.ZoneKey, subZoneKey: cfg.Locality.SubZoneKey},
		healthParams: params,
		watchParams:  watch,
		checkToken:   c.token.get() != "",
	}, nil
}

// budget is how many connections the watches and workers share: all of
// max_connections but the token check's.
func (s *Source) budget() int {
	if s.checkToken {
		return s.cfg.MaxConnections - 1
	}
	return s.cfg.MaxConnections
}

// Run watches Consul until ctx ends: see sdk.Source. It sends the full
// state once every datacenter has been read (or has failed, as long as one
// was read), then change sets, and a full state again after Consul was
// unreachable and is back. It returns nil when ctx ends.
func (s *Source) Run(ctx context.Context, up chan<- sdk.Update) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("consul: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	r := newRunner(s, up)
	defer func() {
		cancel()
		r.wg.Wait()
		s.client.close()
	}()
	r.loop(ctx)
	return nil
}

// clusterName renders the cluster name of a service.
func (s *Source) clusterName(service string) string {
	name, err := renderClusterName(s.names, clusterNameData{
		Service: service, Namespace: s.cfg.Namespace, Partition: s.cfg.Partition,
	})
	if err != nil {
		// Validate rendered the template; only a template that fails for
		// some names gets here. Serving the service name keeps it visible.
		s.log.Error("consul: cluster_name template failed; using the service name",
			"service", service, "err", err)
		return service
	}
	return name
}

// selected reports whether a catalog service, with the union of its
// instances' tags, is one the configuration asks for.
func (s *Source) selected(service string, tags []string) bool {
	if len(s.cfg.Services) > 0 && !slices.Contains(s.cfg.Services, service) {
		return false
	}
	return hasTags(tags, s.cfg.Tags)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var _ sdk.Source = (*Source)(nil)
