package config

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/xdsbridge/xdsbridge/internal/builtin"
	"github.com/xdsbridge/xdsbridge/internal/security/allowlist"
	"github.com/xdsbridge/xdsbridge/internal/yamlnode"
)

// parser walks a plugins.yaml node tree and collects every problem.
type parser struct {
	*yamlnode.Reader
	file string
	dir  string
	errs Errors
}

func newParser(file string, data []byte) *parser {
	p := &parser{file: file, dir: filepath.Dir(file)}
	p.Reader = yamlnode.NewReader(len(data), func(line int, msg string) {
		p.errs = append(p.errs, Error{File: p.file, Line: line, Msg: msg})
	})
	return p
}

// errors returns the problems sorted by line, each reported once.
func (p *parser) errors() Errors {
	errs := slices.Clone(p.errs)
	slices.SortStableFunc(errs, func(a, b Error) int { return a.Line - b.Line })
	return slices.Compact(errs)
}

// parse fills cfg, which holds the defaults, from data.
func (p *parser) parse(data []byte, cfg *Config) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			p.YAMLError(data, err)
		}
		return // an empty file is all defaults
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.Errorf(extra.Line, "a second YAML document (after '---'); plugins.yaml holds one")
	case !errors.Is(err, io.EOF):
		p.YAMLError(data, err)
	}
	if len(doc.Content) == 0 {
		return
	}
	p.root(doc.Content[0], cfg)
	p.TooLarge(doc.Line, "")
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// duration reads a non-negative duration such as 10ms or 1.5s.
func (p *parser) duration(path string, k, v *yaml.Node) (time.Duration, bool) {
	v = yamlnode.Resolve(v)
	if v.Kind != yaml.ScalarNode || yamlnode.IsNull(v) {
		p.Errorf(k.Line, "%s: expected a duration such as 10ms or 1.5s, found %s", path, yamlnode.Describe(v))
		return 0, false
	}
	d, err := time.ParseDuration(v.Value)
	if err != nil {
		p.Errorf(k.Line, "%s: invalid duration %q (want a number and a unit: ns, us, ms, s, m or h, e.g. 250ms)", path, v.Value)
		return 0, false
	}
	if d < 0 {
		p.Errorf(k.Line, "%s: must not be negative, got %s", path, v.Value)
		return 0, false
	}
	return d, true
}

// boolean reads true or false.
func (p *parser) boolean(path string, k, v *yaml.Node) (bool, bool) {
	v = yamlnode.Resolve(v)
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" {
		p.Errorf(k.Line, "%s: expected true or false, found %s", path, yamlnode.Describe(v))
		return false, false
	}
	var b bool
	if err := v.Decode(&b); err != nil {
		p.Errorf(k.Line, "%s: expected true or false, found %s", path, yamlnode.Describe(v))
		return false, false
	}
	return b, true
}

// number reads a non-negative number such as 50 or 0.5.
func (p *parser) number(path string, k, v *yaml.Node) (float64, bool) {
	v = yamlnode.Resolve(v)
	if v.Kind != yaml.ScalarNode || (v.ShortTag() != "!!int" && v.ShortTag() != "!!float") {
		p.Errorf(k.Line, "%s: expected a number, found %s", path, yamlnode.Describe(v))
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(v.Value, "_", ""), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		p.Errorf(k.Line, "%s: invalid number %q", path, v.Value)
		return 0, false
	}
	if f < 0 {
		p.Errorf(k.Line, "%s: must not be negative, got %s", path, v.Value)
		return 0, false
	}
	return f, true
}

// integer reads a whole number in [lo, hi].
func (p *parser) integer(path string, k, v *yaml.Node, lo, hi int) (int, bool) {
	v = yamlnode.Resolve(v)
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" {
		p.Errorf(k.Line, "%s: expected a whole number, found %s", path, yamlnode.Describe(v))
		return 0, false
	}
	var n int
	if err := v.Decode(&n); err != nil {
		p.Errorf(k.Line, "%s: invalid whole number %q", path, v.Value)
		return 0, false
	}
	if n < lo || n > hi {
		p.Errorf(k.Line, "%s: %d out of range (%d-%d)", path, n, lo, hi)
		return 0, false
	}
	return n, true
}

// listener records an address key for the check that no two listeners
// share an address.
type listener struct {
	path string
	addr string
	line int
}

// address reads a listen address host:port. allowEmpty lets "" (or null)
// disable the listener.
func (p *parser) address(path string, k, v *yaml.Node, allowEmpty bool) (string, bool) {
	s, ok := p.Str(path, k, v)
	if !ok {
		return "", false
	}
	if s == "" {
		if allowEmpty {
			return "", true
		}
		p.Errorf(k.Line, "%s: must not be empty (want host:port)", path)
		return "", false
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		msg := err.Error()
		if errors.As(err, &ae) {
			msg = strings.TrimSuffix(ae.Err, " in address")
		}
		p.Errorf(k.Line, "%s: %s in %q (want host:port, e.g. 127.0.0.1:5678)", path, msg, s)
		return "", false
	}
	ok = true
	if host != "" && !validHost(host) {
		p.Errorf(k.Line, "%s: invalid host %q in address %q (want an IP address or a host name)", path, host, s)
		ok = false
	}
	n, err := strconv.Atoi(port)
	switch {
	case err != nil && port == "":
		p.Errorf(k.Line, "%s: missing port in %q (want host:port, e.g. 127.0.0.1:5678)", path, s)
		ok = false
	case err != nil:
		p.Errorf(k.Line, "%s: port %q is not a number", path, port)
		ok = false
	case n < 0 || n > 65535:
		p.Errorf(k.Line, "%s: port %d out of range (0-65535)", path, n)
		ok = false
	}
	return s, ok
}

var hostRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)

func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return hostRE.MatchString(h)
}

// root walks the top-level mapping.
func (p *parser) root(n *yaml.Node, cfg *Config) {
	var listeners []listener
	listen := func(path string, k *yaml.Node, addr string) {
		listeners = append(listeners, listener{path, addr, k.Line})
	}
	p.Fields("", nil, n, []string{"xds", "admin", "aggregator", "plugins"}, func(name string, k, v *yaml.Node) {
		switch name {
		case "xds":
			p.Fields("xds", k, v, []string{"grpc_address", "rest_address", "rest_cluster", "keepalive", "rate_limit", "clients", "tls", "grpc_listeners"}, func(name string, k, v *yaml.Node) {
				path := "xds." + name
				switch name {
				case "grpc_listeners":
					p.grpcListeners(path, k, v, &cfg.XDS.GRPCListeners)
				case "tls":
					cfg.XDS.TLS = p.tls(path, k, v)
				case "keepalive":
					p.keepalive(path, k, v, &cfg.XDS.Keepalive)
				case "rate_limit":
					p.Fields(path, k, v, []string{"per_connection", "total"}, func(name string, k, v *yaml.Node) {
						switch name {
						case "per_connection":
							p.bucket(path+"."+name, k, v, &cfg.XDS.RateLimit.PerConnection)
						case "total":
							p.bucket(path+"."+name, k, v, &cfg.XDS.RateLimit.Total)
						}
					})
				case "clients":
					p.clients(path, k, v, &cfg.XDS.Clients)
				case "grpc_address":
					if s, ok := p.address(path, k, v, false); ok {
						cfg.XDS.GRPCAddress = s
						listen(path, k, s)
					}
				case "rest_address":
					if s, ok := p.address(path, k, v, true); ok {
						cfg.XDS.RESTAddress = s
						listen(path, k, s)
					}
				case "rest_cluster":
					if s, ok := p.Str(path, k, v); ok {
						if s == "" {
							p.Errorf(v.Line, "%s: must not be empty: it names the cluster in REST clients' bootstraps that points at rest_address", path)
						} else {
							cfg.XDS.RESTCluster = s
						}
					}
				}
			})
		case "admin":
			p.Fields("admin", k, v, []string{"address", "token_file", "pprof"}, func(name string, k, v *yaml.Node) {
				path := "admin." + name
				switch name {
				case "address":
					if s, ok := p.address(path, k, v, true); ok {
						cfg.Admin.Address = s
						listen(path, k, s)
					}
				case "token_file":
					if s, ok := p.Str(path, k, v); ok {
						cfg.Admin.TokenFile = p.path(s)
					}
				case "pprof":
					if b, ok := p.boolean(path, k, v); ok {
						cfg.Admin.PProf = b
					}
				}
			})
		case "aggregator":
			p.Fields("aggregator", k, v, []string{"debounce", "ready_timeout"}, func(name string, k, v *yaml.Node) {
				d, ok := p.duration("aggregator."+name, k, v)
				if !ok {
					return
				}
				switch name {
				case "debounce":
					cfg.Aggregator.Debounce = d
				case "ready_timeout":
					cfg.Aggregator.ReadyTimeout = d
				}
			})
		case "plugins":
			cfg.Plugins = p.plugins(k, v)
		}
	})
	p.checkListeners(listeners)
}

// keepalive walks xds.keepalive over the defaults in ka.
func (p *parser) keepalive(path string, k, v *yaml.Node, ka *Keepalive) {
	known := []string{"time", "timeout", "min_ping_interval", "permit_without_stream"}
	p.Fields(path, k, v, known, func(name string, k, v *yaml.Node) {
		kpath := path + "." + name
		if name == "permit_without_stream" {
			if b, ok := p.boolean(kpath, k, v); ok {
				ka.PermitWithoutStream = b
			}
			return
		}
		d, ok := p.duration(kpath, k, v)
		if !ok {
			return
		}
		switch {
		case name == "time" && d < time.Second:
			p.Errorf(k.Line, "%s: must be at least 1s (gRPC pings at most once a second), got %s", kpath, d)
		case d == 0:
			p.Errorf(k.Line, "%s: must be positive", kpath)
		case name == "time":
			ka.Time = d
		case name == "timeout":
			ka.Timeout = d
		case name == "min_ping_interval":
			ka.MinPingInterval = d
		}
	})
}

// path resolves a path in the file against its directory; "" stays "".
func (p *parser) path(s string) string {
	if s == "" || filepath.IsAbs(s) {
		return s
	}
	return filepath.Join(p.dir, s)
}

// tls walks xds.tls. A null block is no TLS; a block with problems gives
// nil after reporting them.
func (p *parser) tls(path string, k, v *yaml.Node) *TLS {
	if yamlnode.IsNull(v) {
		return nil
	}
	t := &TLS{MinVersion: tls.VersionTLS12}
	nerrs := len(p.errs)
	var caKey, allowKey *yaml.Node
	var hasCert, hasKey bool
	known := []string{"cert_file", "key_file", "client_ca_file", "min_version", "allow"}
	if !p.Fields(path, k, v, known, func(name string, k, v *yaml.Node) {
		kpath := path + "." + name
		switch name {
		case "cert_file", "key_file", "client_ca_file":
			hasCert = hasCert || name == "cert_file"
			hasKey = hasKey || name == "key_file"
			s, ok := p.Str(kpath, k, v)
			if !ok {
				return
			}
			if s == "" {
				p.Errorf(k.Line, "%s: must not be empty (want a path to a PEM file)", kpath)
				return
			}
			switch name {
			case "cert_file":
				t.CertFile = p.path(s)
			case "key_file":
				t.KeyFile = p.path(s)
			case "client_ca_file":
				caKey, t.ClientCAFile = k, p.path(s)
			}
		case "min_version":
			s, ok := p.Str(kpath, k, v)
			switch {
			case !ok:
			case s == "1.2":
				t.MinVersion = tls.VersionTLS12
			case s == "1.3":
				t.MinVersion = tls.VersionTLS13
			default:
				p.Errorf(k.Line, "%s: unknown TLS version %q (want \"1.2\" or \"1.3\")", kpath, s)
			}
		case "allow":
			allowKey = k
			t.Allow = p.allow(kpath, k, v)
		}
	}) {
		return nil
	}
	line := k.Line
	if !hasCert {
		p.Errorf(line, "%s: missing cert_file (the server's PEM certificate chain)", path)
	}
	if !hasKey {
		p.Errorf(line, "%s: missing key_file (the server's PEM private key)", path)
	}
	if allowKey != nil && caKey == nil {
		p.Errorf(allowKey.Line, "%s.allow: needs client_ca_file: identities come from verified client certificates", path)
	}
	if len(p.errs) != nerrs {
		return nil
	}
	return t
}

// allow walks xds.tls.allow, a list of rules.
func (p *parser) allow(path string, k, v *yaml.Node) []AllowRule {
	v = yamlnode.Resolve(v)
	if yamlnode.IsNull(v) {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		p.Errorf(k.Line, "%s: expected a list of rules (identity, node_ids, node_clusters), found %s", path, yamlnode.Describe(v))
		return nil
	}
	var out []AllowRule
	for i, e := range v.Content {
		epath := fmt.Sprintf("%s[%d]", path, i)
		line := e.Line
		var r AllowRule
		var hasID bool
		p.Fields(epath, nil, e, []string{"identity", "node_ids", "node_clusters"}, func(name string, k, v *yaml.Node) {
			kpath := epath + "." + name
			switch name {
			case "identity":
				if s, ok := p.Str(kpath, k, v); ok && s != "" {
					hasID, r.Identity = true, s
					p.pattern(kpath, k, s)
				} else if ok {
					p.Errorf(k.Line, "%s: must not be empty", kpath)
					hasID = true
				}
			case "node_ids", "node_clusters":
				list := p.strList(kpath, k, v)
				for _, s := range list {
					p.pattern(kpath, k, s)
				}
				if name == "node_ids" {
					r.NodeIDs = list
				} else {
					r.NodeClusters = list
				}
			}
		})
		if yamlnode.Resolve(e).Kind == yaml.MappingNode {
			if !hasID {
				p.Errorf(line, "%s: missing identity (a URI or DNS SAN pattern of client certificates)", epath)
			}
			if len(r.NodeIDs) == 0 && len(r.NodeClusters) == 0 {
				p.Errorf(line, "%s: set node_ids or node_clusters (or both; [\"*\"] means any)", epath)
			}
		}
		out = append(out, r)
	}
	return out
}

// strList reads a list of non-empty strings.
func (p *parser) strList(path string, k, v *yaml.Node) []string {
	v = yamlnode.Resolve(v)
	if yamlnode.IsNull(v) {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		p.Errorf(k.Line, "%s: expected a list of strings, found %s", path, yamlnode.Describe(v))
		return nil
	}
	var out []string
	for i, e := range v.Content {
		e = yamlnode.Resolve(e)
		if e.Kind != yaml.ScalarNode || yamlnode.IsNull(e) || e.Value == "" {
			p.Errorf(e.Line, "%s[%d]: expected a non-empty string, found %s", path, i, yamlnode.Describe(e))
			continue
		}
		out = append(out, e.Value)
	}
	return out
}

// pattern reports a malformed allow-list glob.
func (p *parser) pattern(path string, k *yaml.Node, s string) {
	if err := allowlist.ValidPattern(s); err != nil {
		p.Errorf(k.Line, "%s: %v", path, err)
	}
}

// bucket walks a rate limit bucket over the defaults in b.
func (p *parser) bucket(path string, k, v *yaml.Node, b *Bucket) {
	p.Fields(path, k, v, []string{"rate", "burst"}, func(name string, k, v *yaml.Node) {
		kpath := path + "." + name
		switch name {
		case "rate":
			if f, ok := p.number(kpath, k, v); ok {
				b.Rate = f
			}
		case "burst":
			if n, ok := p.integer(kpath, k, v, 1, 1_000_000); ok {
				b.Burst = n
			}
		}
	})
}

// clients walks xds.clients over the defaults in c.
func (p *parser) clients(path string, k, v *yaml.Node, c *Clients) {
	p.Fields(path, k, v, []string{"disconnect_history", "rest_idle_timeout"}, func(name string, k, v *yaml.Node) {
		kpath := path + "." + name
		switch name {
		case "disconnect_history":
			if n, ok := p.integer(kpath, k, v, 0, 10000); ok {
				c.DisconnectHistory = n
			}
		case "rest_idle_timeout":
			d, ok := p.duration(kpath, k, v)
			switch {
			case !ok:
			case d == 0:
				p.Errorf(k.Line, "%s: must be positive", kpath)
			default:
				c.RESTIdleTimeout = d
			}
		}
	})
}

// grpcListeners walks xds.grpc_listeners over the defaults in g. The name
// template must parse and, executed over a cluster name, give a name.
func (p *parser) grpcListeners(path string, k, v *yaml.Node, g *GRPCListeners) {
	p.Fields(path, k, v, []string{"enabled", "name"}, func(name string, k, v *yaml.Node) {
		kpath := path + "." + name
		switch name {
		case "enabled":
			if b, ok := p.boolean(kpath, k, v); ok {
				g.Enabled = b
			}
		case "name":
			s, ok := p.Str(kpath, k, v)
			if !ok {
				return
			}
			if _, err := ParseTargetName(s); err != nil {
				p.Errorf(k.Line, "%s: %v", kpath, err)
				return
			}
			g.Name = s
		}
	})
}

// checkListeners reports two listeners on one address. Port 0 picks a free
// port each time, so it never collides.
func (p *parser) checkListeners(ls []listener) {
	for i, l := range ls {
		if l.addr == "" || strings.HasSuffix(l.addr, ":0") {
			continue
		}
		for _, prev := range ls[:i] {
			if prev.addr == l.addr {
				p.Errorf(l.line, "%s: address %s is already used by %s (line %d)", l.path, l.addr, prev.path, prev.line)
				break
			}
		}
	}
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)

// plugins walks the plugins list.
func (p *parser) plugins(k, v *yaml.Node) []Plugin {
	v = yamlnode.Resolve(v)
	if yamlnode.IsNull(v) {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		p.Errorf(k.Line, "plugins: expected a list of plugins, found %s", yamlnode.Describe(v))
		return nil
	}
	return yamlnode.Named(p.Reader, "plugins", v.Content,
		"expected a mapping with name, type or command, and config; found", "duplicate plugin name",
		func(path string, line int, n *yaml.Node) (Plugin, string, int, bool) {
			pl, nameLine, ok := p.plugin(path, line, n)
			return pl, pl.Name, nameLine, ok
		})
}

// plugin walks one entry of the plugins list. It returns the line of the
// name key, and whether the entry is free of problems.
func (p *parser) plugin(path string, line int, n *yaml.Node) (Plugin, int, bool) {
	pl := Plugin{Line: line, Restart: DefaultRestart()}
	nerrs := len(p.errs)
	var nameKey, typeKey, cmdKey, shaKey *yaml.Node
	known := []string{"name", "type", "command", "sha256", "restart", "restart_on_stale", "config"}
	p.Fields(path, nil, n, known, func(name string, k, v *yaml.Node) {
		kpath := path + "." + name
		switch name {
		case "name":
			nameKey = k
			if s, ok := p.Str(kpath, k, v); ok {
				switch {
				case s == "":
					p.Errorf(k.Line, "%s: must not be empty", kpath)
				case !nameRE.MatchString(s):
					p.Errorf(k.Line, "%s: invalid name %q (want lower-case letters, digits, '_', '.' and '-', starting with a letter or digit)", kpath, s)
				default:
					pl.Name = s
				}
			}
		case "type":
			typeKey = k
			if s, ok := p.Str(kpath, k, v); ok {
				switch {
				case s == "":
					p.Errorf(k.Line, "%s: must not be empty (built-in types: %s)", kpath, strings.Join(builtin.Types(), ", "))
				case !slices.Contains(builtin.Types(), s):
					p.Errorf(k.Line, "%s: unknown built-in type %q%s; for a third-party plugin, set command instead", kpath, s, yamlnode.Suggestion(s, builtin.Types()))
				default:
					pl.Type = s
				}
			}
		case "command":
			cmdKey = k
			pl.Command = p.command(kpath, k, v)
		case "sha256":
			shaKey = k
			if s, ok := p.Str(kpath, k, v); ok {
				pl.SHA256 = p.sha256(kpath, k, s)
			}
		case "restart":
			p.restart(kpath, k, v, &pl.Restart)
		case "restart_on_stale":
			if b, ok := p.boolean(kpath, k, v); ok {
				pl.RestartOnStale = b
			}
		case "config":
			pl.configLine = k.Line
			v = yamlnode.Resolve(v)
			if yamlnode.IsNull(v) {
				return
			}
			if v.Kind != yaml.MappingNode {
				p.Errorf(k.Line, "%s: expected a mapping (the plugin's settings), found %s", kpath, yamlnode.Describe(v))
				return
			}
			pl.configNode = v
			flat := p.flatten(v, kpath)
			if p.Exhausted() {
				p.TooLarge(k.Line, kpath)
				return
			}
			b, err := yaml.Marshal(flat)
			if err != nil {
				p.Errorf(k.Line, "%s: cannot re-encode the block: %v", kpath, err)
				return
			}
			pl.Config = b
		}
	})
	if nameKey == nil {
		p.Errorf(line, "%s: missing name", path)
	}
	switch {
	case typeKey == nil && cmdKey == nil:
		p.Errorf(line, "%s: set type (a built-in: %s) or command (a third-party plugin)", path, strings.Join(builtin.Types(), ", "))
	case typeKey != nil && cmdKey != nil:
		p.Errorf(max(typeKey.Line, cmdKey.Line), "%s: set type or command, not both (type at line %d, command at line %d)", path, typeKey.Line, cmdKey.Line)
	case typeKey != nil && shaKey != nil:
		p.Errorf(shaKey.Line, "%s.sha256: applies only to command plugins, not to built-in type %q", path, pl.Type)
	}
	nameLine := line
	if nameKey != nil {
		nameLine = nameKey.Line
	}
	return pl, nameLine, len(p.errs) == nerrs
}

// command reads a command: a list of strings, or one string split on
// spaces. It resolves and checks the program.
func (p *parser) command(path string, k, v *yaml.Node) []string {
	v = yamlnode.Resolve(v)
	var args []string
	line := k.Line
	switch {
	case yamlnode.IsNull(v):
	case v.Kind == yaml.ScalarNode:
		args = strings.Fields(v.Value)
	case v.Kind == yaml.SequenceNode:
		ok := true
		for i, e := range v.Content {
			if i == 0 {
				line = e.Line
			}
			e = yamlnode.Resolve(e)
			if e.Kind != yaml.ScalarNode || yamlnode.IsNull(e) {
				p.Errorf(e.Line, "%s[%d]: expected a string, found %s", path, i, yamlnode.Describe(e))
				ok = false
				continue
			}
			args = append(args, e.Value)
		}
		if !ok {
			return nil
		}
	default:
		p.Errorf(k.Line, "%s: expected a list (program and arguments) or a string, found %s", path, yamlnode.Describe(v))
		return nil
	}
	if len(args) == 0 || args[0] == "" {
		p.Errorf(k.Line, "%s: must not be empty (want the program and its arguments)", path)
		return nil
	}
	prog, msg := p.program(args[0])
	if msg != "" {
		p.Errorf(line, "%s: %s", path, msg)
		return nil
	}
	args[0] = prog
	return args
}

// program resolves a plugin binary: a bare name through PATH, a relative
// path against the file's directory. It returns the absolute path to run,
// or why it cannot be run.
func (p *parser) program(bin string) (string, string) {
	if !strings.ContainsRune(bin, '/') && !strings.ContainsRune(bin, filepath.Separator) {
		path, err := exec.LookPath(bin)
		if err != nil {
			return "", fmt.Sprintf("program %q not found in PATH", bin)
		}
		return path, ""
	}
	path := bin
	if !filepath.IsAbs(path) {
		path = filepath.Join(p.dir, path)
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Sprintf("program %s does not exist", path)
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Sprintf("program %s: %v", path, err)
	case fi.IsDir():
		return "", fmt.Sprintf("program %s is a directory", path)
	case fi.Mode()&0o111 == 0:
		return "", fmt.Sprintf("program %s is not executable", path)
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return path, ""
}

// sha256 checks a hex SHA-256 digest and returns it in lower case.
func (p *parser) sha256(path string, k *yaml.Node, s string) string {
	if len(s) != 64 {
		p.Errorf(k.Line, "%s: want 64 hex digits (a SHA-256 digest), got %d characters", path, len(s))
		return ""
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			p.Errorf(k.Line, "%s: %q is not a hex digit", path, c)
			return ""
		}
	}
	return strings.ToLower(s)
}

// restart walks a restart block over the defaults in r.
func (p *parser) restart(path string, k, v *yaml.Node, r *Restart) {
	var initKey, maxKey *yaml.Node
	ok := true
	p.Fields(path, k, v, []string{"initial_backoff", "max_backoff"}, func(name string, k, v *yaml.Node) {
		kpath := path + "." + name
		d, good := p.duration(kpath, k, v)
		if good && d == 0 {
			p.Errorf(k.Line, "%s: must be positive", kpath)
			good = false
		}
		if !good {
			ok = false
			return
		}
		switch name {
		case "initial_backoff":
			initKey, r.InitialBackoff = k, d
		case "max_backoff":
			maxKey, r.MaxBackoff = k, d
		}
	})
	if !ok || r.MaxBackoff >= r.InitialBackoff {
		return
	}
	switch {
	case maxKey != nil:
		p.Errorf(maxKey.Line, "%s.max_backoff: %s is less than initial_backoff %s", path, r.MaxBackoff, r.InitialBackoff)
	case initKey != nil:
		p.Errorf(initKey.Line, "%s.initial_backoff: %s is more than max_backoff %s (the default)", path, r.InitialBackoff, r.MaxBackoff)
	}
}

// flatten copies a config block with aliases and merge keys resolved,
// comments dropped and flow style turned to block style, so that it
// re-encodes as a standalone document.
func (p *parser) flatten(n *yaml.Node, path string) *yaml.Node {
	n = yamlnode.Resolve(n)
	if !p.Spend(1) {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
	}
	// Block style puts every key on a line of its own, so that the line
	// numbers in the plugin's decoding errors map back to paths.
	c := &yaml.Node{Kind: n.Kind, Style: n.Style &^ yaml.FlowStyle, Tag: n.Tag, Value: n.Value}
	switch n.Kind {
	case yaml.MappingNode:
		for _, pr := range p.Pairs(n, path) {
			c.Content = append(c.Content, p.flatten(pr.Key, path), p.flatten(pr.Val, join(path, pr.Key.Value)))
		}
	case yaml.SequenceNode:
		for i, e := range n.Content {
			c.Content = append(c.Content, p.flatten(e, fmt.Sprintf("%s[%d]", path, i)))
		}
	}
	return c
}
