package dns

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// Record types a Config can ask for.
const (
	TypeSRV      = "SRV"
	TypeA        = "A"
	TypeAAAA     = "AAAA"
	TypeAAndAAAA = "A+AAAA"
)

// Config is the `config` block of a `type: dns` plugin instance. README.md
// documents every field with an example.
type Config struct {
	// Names are the records to watch. At least one is required.
	Names []Name `yaml:"names"`
	// Type is the record type queried for every name: SRV, A, AAAA or
	// A+AAAA (case-insensitive). Default: SRV.
	Type string `yaml:"type"`
	// Port is the endpoint port for address records (A, AAAA, A+AAAA), where
	// it is required. It is ignored for SRV, whose records carry their own
	// ports. Default: none.
	Port int `yaml:"port"`
	// Servers are the name servers asked, in order, as "ip", "ip:port",
	// "host" or "host:port" (port 53 when omitted; an IPv6 address with a
	// port in brackets). A host name is resolved with the system resolver
	// when the source runs. Default: empty, meaning the nameservers of
	// /etc/resolv.conf, whose search list, ndots, timeout and attempts then
	// apply. Names are always absolute when servers are set.
	Servers []string `yaml:"servers"`
	// Timeout bounds one query to one server. Default (0): the timeout
	// option of /etc/resolv.conf when servers are unset (5s when it has
	// none), otherwise 5s.
	Timeout time.Duration `yaml:"timeout"`
	// Attempts is how many times the servers are asked, in order, before a
	// lookup fails. Default (0): the attempts option of /etc/resolv.conf when
	// servers are unset (2 when it has none), otherwise 1.
	Attempts int `yaml:"attempts"`
	// EDNS0BufferSize is the UDP payload size advertised with EDNS0; 0 sends
	// no EDNS0 option (512-byte answers). Default: 1232, the size DNS Flag
	// Day 2020 recommends.
	EDNS0BufferSize int `yaml:"edns0_buffer_size"`
	// MinRefresh is the shortest time between two lookups of a name, even
	// when the answer's TTL is 0, and the first retry delay after a failure.
	// Default: 5s.
	MinRefresh time.Duration `yaml:"min_refresh"`
	// MaxRefresh is the longest time between two lookups of a name, however
	// long the answer's TTL. Default: 5m.
	MaxRefresh time.Duration `yaml:"max_refresh"`
	// MaxRetryInterval caps the retry delay after failures, which starts at
	// MinRefresh and doubles with each failure in a row. Retries are never
	// closer than MinRefresh, even when MaxRetryInterval is smaller.
	// Default: 30s.
	MaxRetryInterval time.Duration `yaml:"max_retry_interval"`
}

// Name is one record to watch and the cluster it feeds.
type Name struct {
	// Name is the DNS name queried, e.g. "_http._tcp.web.example.com."
	// Required.
	Name string `yaml:"name"`
	// Cluster is the name of the cluster served. Default: the name in lower
	// case without its trailing dot, e.g. "_http._tcp.web.example.com".
	Cluster string `yaml:"cluster"`
}

// DefaultConfig returns the configuration with every default applied.
func DefaultConfig() Config {
	return Config{
		Type:             TypeSRV,
		EDNS0BufferSize:  1232,
		MinRefresh:       5 * time.Second,
		MaxRefresh:       5 * time.Minute,
		MaxRetryInterval: 30 * time.Second,
	}
}

// ClusterName returns the cluster a name feeds when its entry sets none: the
// name in lower case, without its trailing dot.
func ClusterName(name string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
}

// cluster returns the entry's cluster name, derived when unset.
func (n Name) cluster() string {
	if n.Cluster != "" {
		return n.Cluster
	}
	return ClusterName(n.Name)
}

// Validate reports every problem in c as an sdk.ConfigErrors.
func (c Config) Validate() error {
	var errs sdk.ConfigErrors

	qtypes, err := parseType(c.Type)
	if err != nil {
		errs.Add("type", "%v", err)
	}
	srv := len(qtypes) == 1 && qtypes[0] == mdns.TypeSRV
	switch {
	case qtypes == nil || srv:
	case c.Port == 0:
		errs.Add("port", "required for type %s", c.Type)
	case c.Port < 1 || c.Port > 65535:
		errs.Add("port", "%d is out of range 1-65535", c.Port)
	}

	if len(c.Names) == 0 {
		errs.Add("names", "at least one name is required")
	}
	clusters := map[string]int{}
	for i, n := range c.Names {
		path := fmt.Sprintf("names[%d]", i)
		name := strings.TrimSpace(n.Name)
		switch {
		case name == "":
			errs.Add(path+".name", "required")
			continue
		case name != n.Name:
			errs.Add(path+".name", "%q has surrounding spaces", n.Name)
			continue
		}
		if _, ok := mdns.IsDomainName(name); !ok || name == "." {
			errs.Add(path+".name", "%q is not a valid domain name", n.Name)
			continue
		}
		cl := n.cluster()
		if strings.TrimSpace(n.Cluster) != n.Cluster {
			errs.Add(path+".cluster", "%q has surrounding spaces", n.Cluster)
			continue
		}
		if j, dup := clusters[cl]; dup {
			p := path + ".cluster"
			if n.Cluster == "" {
				p = path + ".name"
			}
			errs.Add(p, "cluster %q is already fed by names[%d]", cl, j)
			continue
		}
		clusters[cl] = i
	}

	for i, s := range c.Servers {
		if _, err := parseServer(s); err != nil {
			errs.Add(fmt.Sprintf("servers[%d]", i), "%v", err)
		}
	}

	if c.Timeout < 0 {
		errs.Add("timeout", "must not be negative, got %s (0: default)", c.Timeout)
	}
	if c.Attempts < 0 || c.Attempts > maxAttempts {
		errs.Add("attempts", "%d is out of range 1-%d (0: default)", c.Attempts, maxAttempts)
	}
	if b := c.EDNS0BufferSize; b != 0 && (b < mdns.MinMsgSize || b > 65535) {
		errs.Add("edns0_buffer_size", "%d is out of range %d-65535 (0 disables EDNS0)", b, mdns.MinMsgSize)
	}
	if c.MinRefresh <= 0 {
		errs.Add("min_refresh", "must be positive, got %s", c.MinRefresh)
	}
	if c.MaxRefresh < c.MinRefresh {
		errs.Add("max_refresh", "%s is less than min_refresh %s", c.MaxRefresh, c.MinRefresh)
	}
	if c.MaxRetryInterval <= 0 {
		errs.Add("max_retry_interval", "must be positive, got %s", c.MaxRetryInterval)
	}
	return errs.Err()
}

// parseType maps a Config.Type to the query types it needs.
func parseType(t string) ([]uint16, error) {
	switch strings.ToUpper(t) {
	case TypeSRV:
		return []uint16{mdns.TypeSRV}, nil
	case TypeA:
		return []uint16{mdns.TypeA}, nil
	case TypeAAAA:
		return []uint16{mdns.TypeAAAA}, nil
	case TypeAAndAAAA:
		return []uint16{mdns.TypeA, mdns.TypeAAAA}, nil
	}
	return nil, fmt.Errorf("unknown type %q (want SRV, A, AAAA or A+AAAA)", t)
}

// Defaults and bounds of timeout and attempts. The bounds are the C
// library's for resolv.conf's options (RES_MAXRETRANS, RES_MAXRETRY);
// attempts in the configuration has the same bound.
const (
	defaultTimeout = 5 * time.Second
	maxTimeout     = 30 * time.Second
	maxAttempts    = 5
)

// parseServer turns "ip", "ip:port", "host" or "host:port" into "host:port",
// with an IP address in its canonical form.
func parseServer(s string) (string, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return net.JoinHostPort(ip.String(), "53"), nil
	}
	host, port := s, "53"
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%q: port %q is out of range 1-65535", s, port)
		}
	} else if strings.Contains(s, ":") {
		return "", fmt.Errorf("%q is not ip, ip:port, host or host:port", s)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return net.JoinHostPort(ip.String(), port), nil
	}
	if _, ok := mdns.IsDomainName(host); !ok || strings.Trim(host, ".") == "" || strings.ContainsAny(s, " \t[]") {
		return "", fmt.Errorf("%q: %q is neither an IP address nor a host name", s, host)
	}
	return net.JoinHostPort(host, port), nil
}
