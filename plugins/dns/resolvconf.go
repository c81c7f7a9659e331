package dns

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// system is the resolver that the system configuration (resolv.conf)
// describes, read again when the file changes: each lookup stats the file,
// and a different file (inode), modification time or size makes it read
// again. A file that cannot be read or lists no nameserver leaves the last
// good configuration in use, with a warning.
type system struct {
	path string
	port string // of the nameservers: "53", or another in tests
	cfg  Config // explicit timeout and attempts win over the file's
	log  *slog.Logger

	mu      sync.Mutex
	stat    os.FileInfo // of the file as last read, or tried
	res     *resolver   // from the last good read
	problem string      // the last read's problem, logged once
}

// newSystem reads path, failing when it is unreadable or lists no
// nameserver.
func newSystem(path, port string, cfg Config, log *slog.Logger) (*system, error) {
	s := &system{path: path, port: port, cfg: cfg, log: log}
	stat, err := os.Stat(path)
	if err == nil {
		s.stat = stat
		s.res, err = s.read()
	}
	if err != nil {
		return nil, fmt.Errorf("servers unset and the system resolver configuration is unusable: %w", err)
	}
	return s, nil
}

// current returns the resolver of the configuration as it is now.
func (s *system) current() *resolver {
	s.mu.Lock()
	defer s.mu.Unlock()
	stat, err := os.Stat(s.path)
	if err == nil && unchanged(s.stat, stat) {
		return s.res
	}
	if err == nil {
		s.stat = stat
		var res *resolver
		if res, err = s.read(); err == nil {
			s.res, s.problem = res, ""
			s.log.Info("system resolver configuration read again", "path", s.path,
				"servers", res.servers, "search", res.conf.Search, "ndots", res.conf.Ndots,
				"timeout", res.timeout, "attempts", res.attempts)
			return res
		}
	}
	if err.Error() != s.problem {
		s.problem = err.Error()
		s.log.Warn("system resolver configuration unusable; keeping the last one", "path", s.path, "err", err)
	}
	return s.res
}

// unchanged reports whether two stats are of the same file, unmodified.
func unchanged(a, b os.FileInfo) bool {
	return a != nil && os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// read parses the file into a resolver. Nameservers that are not IP
// addresses are left out, as the C library does.
func (s *system) read() (*resolver, error) {
	conf, err := mdns.ClientConfigFromFile(s.path)
	if err != nil {
		return nil, err
	}
	res := &resolver{conf: conf, ednsSize: uint16(s.cfg.EDNS0BufferSize)}
	for _, ns := range conf.Servers {
		if ip, err := netip.ParseAddr(ns); err == nil {
			res.servers = append(res.servers, net.JoinHostPort(ip.String(), s.port))
		}
	}
	if len(res.servers) == 0 {
		return nil, fmt.Errorf("%s lists no nameserver", s.path)
	}
	res.timeout = s.cfg.Timeout
	if res.timeout == 0 {
		res.timeout = min(time.Duration(conf.Timeout)*time.Second, maxTimeout)
	}
	res.attempts = s.cfg.Attempts
	if res.attempts == 0 {
		res.attempts = min(conf.Attempts, maxAttempts)
	}
	return res, nil
}
