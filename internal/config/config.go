// Package config loads plugins.yaml, the file that says where xdsbridge
// serves and which source plugins it runs.
//
// Top-level keys starting with "x-" are ignored: they are a place for YAML
// anchors that plugin entries share. Anchors, aliases and merge keys (<<)
// work everywhere.
//
// The file is read by walking the YAML node tree by hand, so that every
// problem, at every level, is reported with the line it is on, and all of
// them are reported at once:
//
//	plugins.yaml:3: xds.grpc_address: missing port in address "localhost" (want host:port)
//	plugins.yaml:9: unknown key "comand" in plugins[0] (did you mean "command"?)
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is a loaded plugins.yaml. Build one with Load or Parse; Default
// gives the values used for everything the file leaves out.
type Config struct {
	// File is the path the configuration was read from, as it was given.
	File string
	// Dir is the directory of File. Relative paths in the file (a plugin's
	// command, a plugin's own files) resolve against it.
	Dir string

	XDS        XDS
	Admin      Admin
	Aggregator Aggregator
	// Plugins are the source plugin instances to run, in file order. An
	// empty list is valid: xdsbridge then serves no clusters at all, which
	// is useful for bringing up the listeners before any source exists.
	Plugins []Plugin
}

// XDS is the `xds` section: where the xDS server listens, how it finds
// vanished clients, and how many requests it takes in.
type XDS struct {
	// GRPCAddress serves CDS, EDS, LDS, RDS and ADS, state-of-the-world and
	// delta. Default "127.0.0.1:5678". Port 0 picks a free port.
	GRPCAddress string
	// RESTAddress serves REST-JSON xDS (POST /v3/discovery:clusters, …).
	// Default "127.0.0.1:5679"; "" disables it.
	RESTAddress string
	// RESTCluster is the name of the cluster in REST clients' bootstraps that
	// points at RESTAddress. Clusters served over REST fetch their endpoints
	// from it (clients on gRPC get theirs over ADS). Default "xds_rest".
	RESTCluster string
	// Keepalive is `xds.keepalive`.
	Keepalive Keepalive
	// RateLimit is `xds.rate_limit`.
	RateLimit RateLimit
	// Clients is `xds.clients`.
	Clients Clients
	// TLS is `xds.tls`; nil serves plaintext.
	TLS *TLS
	// GRPCListeners is `xds.grpc_listeners`.
	GRPCListeners GRPCListeners
}

// GRPCListeners is the `xds.grpc_listeners` block: a Listener and
// RouteConfiguration generated for every cluster, so that a proxyless gRPC
// client dials xds:///<name> with no hand-written listener.
type GRPCListeners struct {
	// Enabled generates them. Default false.
	Enabled bool
	// Name is the target name of a cluster, a text/template over
	// {{.Cluster}}, checked by ParseTargetName. Default "{{.Cluster}}".
	Name string
}

// ParseTargetName parses a gRPC target name template, executed over a
// struct with a Cluster field. Executing it over a sample cluster name must
// give a non-empty name, so that a misspelt field (.Clustr) is an error
// here rather than for every cluster.
func ParseTargetName(s string) (*template.Template, error) {
	t, err := template.New("name").Option("missingkey=error").Parse(s)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	if err := t.Execute(&b, struct{ Cluster string }{"web"}); err != nil {
		return nil, fmt.Errorf("%w (the template's one field is .Cluster)", err)
	}
	if b.Len() == 0 {
		return nil, errors.New("gives an empty name for cluster \"web\"")
	}
	return t, nil
}

// TLS is the `xds.tls` block: the gRPC and REST listeners serve TLS, and
// with ClientCAFile require a client certificate signed by those CAs.
// Paths are absolute: relative ones in the file resolve against Dir.
type TLS struct {
	// CertFile is the PEM certificate chain, leaf first. Required.
	CertFile string
	// KeyFile is the PEM private key. Required.
	KeyFile string
	// ClientCAFile is a PEM bundle of the CAs that sign client
	// certificates; "" asks clients for none.
	ClientCAFile string
	// MinVersion is the lowest TLS version accepted: tls.VersionTLS12
	// (the default, "1.2" in the file) or tls.VersionTLS13 ("1.3").
	MinVersion uint16
	// Allow says which client identity may claim which node; empty lets
	// any client with a valid certificate claim any node. Requires
	// ClientCAFile.
	Allow []AllowRule
}

// AllowRule is one entry of `xds.tls.allow`.
type AllowRule struct {
	// Identity matches a URI SAN or DNS SAN of the client certificate.
	Identity string
	// NodeIDs match node.id; NodeClusters match node.cluster. At least
	// one of the two is set.
	NodeIDs      []string
	NodeClusters []string
}

// Keepalive is the `xds.keepalive` block: how the server finds clients
// that vanished without closing their connection (host gone, link cut,
// process frozen), and which client pings it accepts.
//
// A vanished client is disconnected, and leaves /debug/clients and the
// connected-clients gauge, within Time+Timeout of the last thing it sent.
type Keepalive struct {
	// Time is how long a connection may stay silent before the server
	// sends an HTTP/2 PING; TCP keepalive probes start after the same idle
	// time. Default 30s; at least 1s.
	Time time.Duration
	// Timeout is how long the PING may go unanswered before the
	// connection is closed. It is also the TCP keepalive probe interval
	// and the sockets' TCP_USER_TIMEOUT. Default 10s; must be positive.
	Timeout time.Duration
	// MinPingInterval is how often clients may ping. A client that pings
	// more often (three times in a row with no data sent in between) gets
	// GOAWAY too_many_pings. Default 5s, below Envoy's documented
	// connection_keepalive interval (30s, jittered by 15%) and gRPC
	// clients' minimum (10s); must be positive.
	MinPingInterval time.Duration
	// PermitWithoutStream accepts client pings on a connection that has no
	// open stream. Default true.
	PermitWithoutStream bool
}

// RateLimit is the `xds.rate_limit` block: token buckets for discovery
// requests (gRPC and REST). A request over a limit is delayed, never
// refused, so a reconnect storm or a misbehaving client slows down instead
// of starving the server.
type RateLimit struct {
	// PerConnection limits each connection. Default 50 requests/s, burst 100.
	PerConnection Bucket
	// Total limits all connections together. Default 2000 requests/s,
	// burst 4000.
	Total Bucket
}

// Bucket is a token bucket.
type Bucket struct {
	// Rate is requests per second; 0 does not limit.
	Rate float64
	// Burst is how many requests may go through at once; at least 1 when
	// Rate is set.
	Burst int
}

// Clients is the `xds.clients` block: what the connection registry keeps.
type Clients struct {
	// DisconnectHistory is how many recent disconnects /debug/clients
	// keeps, with their reasons. Default 100; 0 keeps none; at most 10000.
	DisconnectHistory int
	// RESTIdleTimeout is how long a REST client (which has no connection
	// to lose) is remembered after its last request. Default 5m; must be
	// positive.
	RESTIdleTimeout time.Duration
}

// Admin is the `admin` section.
type Admin struct {
	// Address serves /metrics, /healthz, /readyz, /debug/clients,
	// /debug/sources, /debug/resources and, with PProf, /debug/pprof/.
	// Default "127.0.0.1:9902"; "" disables it. An address that is not
	// loopback needs TokenFile.
	Address string
	// TokenFile holds the bearer token every request but /healthz and
	// /readyz must carry; "" requires none. Absolute: a relative path in
	// the file resolves against Dir.
	TokenFile string
	// PProf serves /debug/pprof/. Default false.
	PProf bool
}

// Aggregator is the `aggregator` section.
type Aggregator struct {
	// Debounce is the minimum time between two builds of the model; updates
	// arriving within it are coalesced into one build. Default 10ms; 0
	// builds on every update.
	Debounce time.Duration
	// ReadyTimeout is how long to hold back serving while a source has not
	// delivered its first full state; after it, serve what there is.
	// Default 30s; 0 serves at once.
	ReadyTimeout time.Duration
}

// Plugin is one entry of the `plugins` list: a source plugin instance.
type Plugin struct {
	// Name is the instance's unique name ([a-z0-9][a-z0-9_.-]*). It appears
	// in logs, metrics and endpoint provenance. Required.
	Name string
	// Type names a built-in plugin (see builtin.Types). Exactly one of Type
	// and Command is set.
	Type string
	// Command runs a third-party plugin: the program and its arguments. In
	// the file it is a list, or a string split on spaces. Command[0] is the
	// program's absolute path: a relative path in the file resolves against
	// Dir, a bare name through PATH.
	Command []string
	// SHA256 is the lower-case hex SHA-256 of Command[0]'s binary; when set,
	// the host refuses to start a binary that does not match. Optional,
	// Command plugins only.
	SHA256 string
	// Restart is how the host restarts the plugin when it dies or hangs.
	Restart Restart
	// RestartOnStale restarts the plugin when its source stays silent for
	// longer than the max_silence it declared (a Run that is stuck while
	// the process still answers health checks). Default false: a stale
	// source is only reported, in /debug/sources and xdsbridge_source_stale.
	RestartOnStale bool
	// Config is the plugin's `config` block re-encoded as YAML, with anchors
	// and merge keys resolved; the plugin decodes it. Nil when absent.
	Config []byte
	// Line is the line of the plugin's entry in File.
	Line int

	configLine int        // line of the `config` key, 0 when absent
	configNode *yaml.Node // the config block as written, for Locate
}

// Restart is a plugin's `restart` block: capped, jittered exponential
// backoff between restarts.
type Restart struct {
	// InitialBackoff is the wait before the first restart; it doubles on
	// each further failure. Default 100ms; must be positive.
	InitialBackoff time.Duration
	// MaxBackoff caps the wait. Default 30s; must not be less than
	// InitialBackoff.
	MaxBackoff time.Duration
}

// Default returns the configuration of an empty plugins.yaml. It is the one
// place defaults are set; DefaultRestart gives the default of every
// plugin's restart block.
func Default() *Config {
	return &Config{
		XDS: XDS{
			GRPCAddress: "127.0.0.1:5678",
			RESTAddress: "127.0.0.1:5679",
			RESTCluster: "xds_rest",
			Keepalive: Keepalive{
				Time:                30 * time.Second,
				Timeout:             10 * time.Second,
				MinPingInterval:     5 * time.Second,
				PermitWithoutStream: true,
			},
			RateLimit: RateLimit{
				PerConnection: Bucket{Rate: 50, Burst: 100},
				Total:         Bucket{Rate: 2000, Burst: 4000},
			},
			Clients: Clients{
				DisconnectHistory: 100,
				RESTIdleTimeout:   5 * time.Minute,
			},
			GRPCListeners: GRPCListeners{Name: "{{.Cluster}}"},
		},
		Admin: Admin{
			Address: "127.0.0.1:9902",
		},
		Aggregator: Aggregator{
			Debounce:     10 * time.Millisecond,
			ReadyTimeout: 30 * time.Second,
		},
	}
}

// DefaultRestart returns the restart policy of a plugin entry that has no
// restart block, or leaves out one of its keys.
func DefaultRestart() Restart {
	return Restart{
		InitialBackoff: 100 * time.Millisecond,
		MaxBackoff:     30 * time.Second,
	}
}

// Load reads and parses the file at path. A file that cannot be read gives
// a wrapped error; a file that is invalid gives Errors.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses data, the contents of file. Every problem in data is
// reported, as Errors sorted by line; the Config is nil then. file names
// the data in errors, and its directory is where relative paths resolve.
func Parse(file string, data []byte) (*Config, error) {
	p := newParser(file, data)
	cfg := Default()
	cfg.File = file
	cfg.Dir = filepath.Dir(file)
	p.parse(data, cfg)
	if errs := p.errors(); len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// Error is one problem in a configuration file.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e Error) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Errors is every problem found in a configuration file, sorted by line.
type Errors []Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}
