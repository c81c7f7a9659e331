package consul

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/xdsbridge/xdsbridge/internal/security/secret"
	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/sdk/overlay"
)

// Health thresholds a Config can ask for.
const (
	HealthPassing = "passing"
	HealthWarning = "warning"
	HealthAny     = "any"
)

// Config is the `config` block of a `type: consul` plugin instance. README.md
// documents every field with an example.
type Config struct {
	// Address is the Consul agent's HTTP API as host:port. Default:
	// 127.0.0.1:8500.
	Address string `yaml:"address"`
	// Scheme is http or https. Default: http.
	Scheme string `yaml:"scheme"`
	// Token is the ACL token sent with every request. It is a
	// secret.String, so it prints as "[redacted]" wherever the config is
	// logged or shown. Default: none (the agent's default token applies).
	Token secret.String `yaml:"token"`
	// TokenFile is a file holding the token, read at start and again
	// whenever Consul answers 403, so a rotated token is picked up. Relative
	// to the directory of plugins.yaml. Excludes token. Default: none.
	TokenFile string `yaml:"token_file"`
	// TLS configures https. Default: the system roots, no client
	// certificate.
	TLS TLSConfig `yaml:"tls"`
	// Namespace is the Consul Enterprise namespace read. Default: none (the
	// token's namespace).
	Namespace string `yaml:"namespace"`
	// Partition is the Consul Enterprise admin partition read. Default:
	// none (the token's partition).
	Partition string `yaml:"partition"`
	// AllowStale lets any Consul server answer, not only the leader.
	// Default: true.
	AllowStale bool `yaml:"allow_stale"`

	// Datacenters are read in failover order: endpoints of the first have
	// priority 0, of the second priority 1, and so on. Default: none,
	// meaning the agent's own datacenter only.
	Datacenters []string `yaml:"datacenters"`
	// Services is an allow list of service names. Default: none, meaning
	// every service.
	Services []string `yaml:"services"`
	// Tags an instance must all carry (compared case-insensitively, as
	// Consul does). Default: none.
	Tags []string `yaml:"tags"`
	// NodeMeta is node metadata an instance's node must all carry.
	// Default: none.
	NodeMeta map[string]string `yaml:"node_meta"`
	// Filter is a Consul filter expression applied to each instance, with
	// the selectors of /v1/health/service (Node.*, Service.*, Checks.*).
	// Default: none.
	Filter string `yaml:"filter"`
	// Health is the worst health still served: passing, warning or any.
	// Default: passing.
	Health string `yaml:"health"`

	// ClusterName is a Go text/template giving a service's cluster name
	// from .Service, .Namespace and .Partition. It must give different
	// names to different services. Default: "{{.Service}}".
	ClusterName string `yaml:"cluster_name"`
	// Locality names the node-metadata keys that place an endpoint. The
	// region is always the datacenter. Default: no zone, no sub-zone.
	Locality LocalityConfig `yaml:"locality"`
	// Overlays maps a service name to Envoy Cluster fields (proto3 JSON
	// names, e.g. connect_timeout, lb_policy, circuit_breakers) laid over
	// the service's generated cluster. Default: none.
	Overlays map[string]map[string]any `yaml:"overlays"`

	// MaxConnections bounds the concurrent HTTP connections to Consul, and
	// so the concurrent blocking queries. At least 3 per datacenter plus 1,
	// and 1 more with a token (for the token check). Default: 64.
	MaxConnections int `yaml:"max_connections"`
	// Wait is the longest a blocking query waits for a change before Consul
	// answers anyway (Consul caps it at 10m). Default: 5m.
	Wait time.Duration `yaml:"wait"`
	// Coalesce is how long changes are held to gather a burst into one
	// update: an update goes out once no change came for Coalesce, and at
	// the latest 10×Coalesce after the first held change. Default: 5ms.
	Coalesce time.Duration `yaml:"coalesce"`
	// Retry is the backoff after a failed request.
	Retry RetryConfig `yaml:"retry"`
}

// TLSConfig configures https to Consul. Relative paths resolve against the
// directory of plugins.yaml.
type TLSConfig struct {
	// CAFile is a PEM bundle of the CAs that may sign Consul's certificate.
	// Default: the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the client certificate and key presented to
	// Consul; both or neither. Default: none.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name Consul's certificate must carry. Default: the
	// host of address.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any certificate. For tests only. Default:
	// false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

func (t TLSConfig) set() bool { return t != TLSConfig{} }

// LocalityConfig names node-metadata keys.
type LocalityConfig struct {
	// ZoneKey is the node-metadata key whose value is the endpoint's zone.
	// Default: none.
	ZoneKey string `yaml:"zone_key"`
	// SubZoneKey is the node-metadata key whose value is the endpoint's
	// sub-zone. Default: none.
	SubZoneKey string `yaml:"sub_zone_key"`
}

// RetryConfig is a capped, jittered exponential backoff.
type RetryConfig struct {
	// Initial is the delay after the first failure; it doubles with each
	// failure in a row. Default: 500ms.
	Initial time.Duration `yaml:"initial"`
	// Max caps the delay. With a token, it is also the longest a revoked
	// or expired token goes unnoticed. Default: 30s.
	Max time.Duration `yaml:"max"`
}

// DefaultConfig returns the configuration with every default applied.
func DefaultConfig() Config {
	return Config{
		Address:        "127.0.0.1:8500",
		Scheme:         "http",
		AllowStale:     true,
		Health:         HealthPassing,
		ClusterName:    "{{.Service}}",
		MaxConnections: 64,
		Wait:           5 * time.Minute,
		Coalesce:       5 * time.Millisecond,
		Retry:          RetryConfig{Initial: 500 * time.Millisecond, Max: 30 * time.Second},
	}
}

// maxWait is Consul's cap on a blocking query's wait.
const maxWait = 10 * time.Minute

// Validate reports every problem in c as an sdk.ConfigErrors. It reads no
// file and reaches no server.
func (c Config) Validate() error {
	var errs sdk.ConfigErrors

	if host, port, err := net.SplitHostPort(c.Address); err != nil || host == "" {
		errs.Add("address", "%q is not host:port", c.Address)
	} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		errs.Add("address", "port %q is out of range 1-65535", port)
	}
	switch c.Scheme {
	case "http":
		if c.TLS.set() {
			errs.Add("tls", "set, but scheme is http (set scheme: https)")
		}
	case "https":
	default:
		errs.Add("scheme", "unknown scheme %q (want http or https)", c.Scheme)
	}
	if !c.Token.IsZero() && c.TokenFile != "" {
		errs.Add("token_file", "set together with token; set one of them")
	}
	if tok := c.Token.Reveal(); strings.TrimSpace(tok) != tok {
		errs.Add("token", "has surrounding spaces")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs.Add("tls", "cert_file and key_file go together")
	}

	seen := map[string]int{}
	for i, dc := range c.Datacenters {
		path := fmt.Sprintf("datacenters[%d]", i)
		switch j, dup := seen[dc]; {
		case strings.TrimSpace(dc) == "":
			errs.Add(path, "empty datacenter name")
		case dup:
			errs.Add(path, "%q is already datacenters[%d]", dc, j)
		default:
			seen[dc] = i
		}
	}
	seen = map[string]int{}
	for i, s := range c.Services {
		path := fmt.Sprintf("services[%d]", i)
		switch j, dup := seen[s]; {
		case strings.TrimSpace(s) == "":
			errs.Add(path, "empty service name")
		case dup:
			errs.Add(path, "%q is already services[%d]", s, j)
		default:
			seen[s] = i
		}
	}
	for i, tag := range c.Tags {
		if tag == "" {
			errs.Add(fmt.Sprintf("tags[%d]", i), "empty tag")
		}
	}
	for k := range c.NodeMeta {
		if k == "" {
			errs.Add("node_meta", "empty key")
		}
	}
	switch c.Health {
	case HealthPassing, HealthWarning, HealthAny:
	default:
		errs.Add("health", "unknown health %q (want passing, warning or any)", c.Health)
	}

	if _, err := parseClusterName(c.ClusterName); err != nil {
		errs.Add("cluster_name", "%v", err)
	}
	for _, name := range sortedKeys(c.Overlays) {
		if len(c.Services) > 0 && !slices.Contains(c.Services, name) {
			errs.Add("overlays."+name, "service %q is not in services, so it is never served", name)
		}
		if _, err := overlay.Parse(c.Overlays[name]); err != nil {
			errs.Add("overlays."+name, "%s", strings.TrimPrefix(err.Error(), "overlay: "))
		}
	}

	least := 3*max(1, len(c.Datacenters)) + 1
	if c.hasToken() {
		least++ // the token check
	}
	if c.MaxConnections < least {
		errs.Add("max_connections", "%d is too few: at least 3 per datacenter plus 1, and 1 more with a token (%d)",
			c.MaxConnections, least)
	}
	if c.Wait < time.Second || c.Wait > maxWait {
		errs.Add("wait", "%s is out of range 1s-%s", c.Wait, maxWait)
	}
	if c.Coalesce < 0 || c.Coalesce > time.Second {
		errs.Add("coalesce", "%s is out of range 0-1s", c.Coalesce)
	}
	if c.Retry.Initial <= 0 {
		errs.Add("retry.initial", "must be positive, got %s", c.Retry.Initial)
	}
	if c.Retry.Max < c.Retry.Initial {
		errs.Add("retry.max", "%s is less than retry.initial %s", c.Retry.Max, c.Retry.Initial)
	}
	return errs.Err()
}

// hasToken reports whether a token is configured, inline or in a file.
func (c Config) hasToken() bool { return !c.Token.IsZero() || c.TokenFile != "" }

// clusterNameData is what a ClusterName template sees.
type clusterNameData struct {
	Service   string
	Namespace string
	Partition string
}

// parseClusterName parses a ClusterName template and checks that it gives
// non-empty names that differ between services.
func parseClusterName(text string) (*template.Template, error) {
	tmpl, err := template.New("cluster_name").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "template: "))
	}
	a, errA := renderClusterName(tmpl, clusterNameData{Service: "a"})
	b, errB := renderClusterName(tmpl, clusterNameData{Service: "b"})
	switch {
	case errA != nil:
		return nil, errA
	case errB != nil:
		return nil, errB
	case a == b:
		return nil, fmt.Errorf("%q gives every service the same cluster name %q (use {{.Service}})", text, a)
	}
	return tmpl, nil
}

func renderClusterName(tmpl *template.Template, d clusterNameData) (string, error) {
	var b strings.Builder
	if err := tmpl.Execute(&b, d); err != nil {
		return "", fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "template: "))
	}
	if strings.TrimSpace(b.String()) == "" {
		return "", fmt.Errorf("gives an empty cluster name for service %q", d.Service)
	}
	return b.String(), nil
}
