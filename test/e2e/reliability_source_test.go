package e2e

// Source faults: the registry behind a plugin fails — DNS servers that
// SERVFAIL or vanish, a Consul agent stopped, restarted and wiped. The last
// good state must be kept, the status reported, and recovery must come
// without a plugin restart.

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	mdns "github.com/miekg/dns"

	"github.com/xdsbridge/xdsbridge/test/consul"
)

// dnsServer is an in-process authoritative server for one SRV name on
// 127.0.0.1, UDP and TCP on one port, that a test can switch to SERVFAIL
// or stop and start again.
type dnsServer struct {
	t        testing.TB
	addr     string
	servfail atomic.Bool
	queries  atomic.Int64

	mu      sync.Mutex
	targets map[string]string // SRV target → IPv4
	servers []*mdns.Server
}

func newDNSServer(t testing.TB, targets map[string]string) *dnsServer {
	d := &dnsServer{t: t, targets: targets}
	d.start("127.0.0.1:0")
	t.Cleanup(d.stop)
	return d
}

func (d *dnsServer) setTargets(targets map[string]string) {
	d.mu.Lock()
	d.targets = targets
	d.mu.Unlock()
}

func (d *dnsServer) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	d.queries.Add(1)
	m := new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if d.servfail.Load() {
		m.Rcode = mdns.RcodeServerFailure
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case q.Qtype == mdns.TypeSRV && q.Name == "_svc._tcp.example.":
		for target, ip := range d.targets {
			m.Answer = append(m.Answer, &mdns.SRV{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeSRV, Class: mdns.ClassINET, Ttl: 1},
				Priority: 10, Weight: 10, Port: 8080, Target: target})
			m.Extra = append(m.Extra, &mdns.A{Hdr: mdns.RR_Header{Name: target, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 1}, A: net.ParseIP(ip)})
		}
	case q.Qtype == mdns.TypeA:
		for target, ip := range d.targets {
			if target == q.Name {
				m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: target, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 1}, A: net.ParseIP(ip)})
			}
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = []mdns.RR{&mdns.SOA{Hdr: mdns.RR_Header{Name: "example.", Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: 1},
			Ns: "ns.example.", Mbox: "h.example.", Serial: 1, Refresh: 1, Retry: 1, Expire: 1, Minttl: 1}}
	}
	_ = w.WriteMsg(m)
}

// start listens on addr (UDP and TCP on one port) and serves.
func (d *dnsServer) start(addr string) {
	d.t.Helper()
	var pc net.PacketConn
	var l net.Listener
	var err error
	for range 20 {
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			pc.Close()
			time.Sleep(100 * time.Millisecond)
			continue
		}
		break
	}
	if err != nil {
		d.t.Fatalf("dns server on %s: %v", addr, err)
	}
	d.addr = pc.LocalAddr().String()
	udp := &mdns.Server{PacketConn: pc, Handler: d}
	tcp := &mdns.Server{Listener: l, Handler: d}
	var wg sync.WaitGroup
	for _, s := range []*mdns.Server{udp, tcp} {
		wg.Add(1)
		s.NotifyStartedFunc = wg.Done
		go func() { _ = s.ActivateAndServe() }()
	}
	wg.Wait()
	d.mu.Lock()
	d.servers = []*mdns.Server{udp, tcp}
	d.mu.Unlock()
}

// stop shuts the server down: the port refuses queries.
func (d *dnsServer) stop() {
	d.mu.Lock()
	servers := d.servers
	d.servers = nil
	d.mu.Unlock()
	for _, s := range servers {
		_ = s.Shutdown()
	}
}

// TestReliabilityDNSFaults: the DNS plugin's server answers SERVFAIL for a
// while, then becomes unreachable; clients keep the last good endpoints,
// /debug/sources reports the source disconnected with the reason, and
// when the server answers again (with a change) the source recovers on
// its own: no plugin restart.
func TestReliabilityDNSFaults(t *testing.T) {
	d := newDNSServer(t, map[string]string{"a.example.": "10.1.0.1", "b.example.": "10.1.0.2"})
	plugins := fmt.Sprintf(`plugins:
  - name: names
    type: dns
    config:
      names: [{name: _svc._tcp.example., cluster: svc}]
      servers: [%q]
      timeout: 200ms
      min_refresh: 100ms
      max_refresh: 500ms
      max_retry_interval: 400ms
`, d.addr)
	b := startBridge(t, map[string]string{"plugins.yaml": plugins})
	w := newWatcher(t, b.grpcAddr, "dns-watch", true, false)
	first := map[string][]string{"svc": {"10.1.0.1:8080", "10.1.0.2:8080"}}
	eventually(t, 15*time.Second, "the SRV records", func() bool { return w.holds(first) })

	phases := []struct {
		name   string
		fault  func()
		heal   func()
		reason string
		after  map[string]string
	}{
		{name: "SERVFAIL burst", fault: func() { d.servfail.Store(true) }, heal: func() { d.servfail.Store(false) },
			reason: "SERVFAIL", after: map[string]string{"a.example.": "10.1.0.1", "b.example.": "10.1.0.2", "c.example.": "10.1.0.3"}},
		{name: "unreachable server", fault: d.stop, heal: func() { d.start(d.addr) },
			reason: d.addr, after: map[string]string{"a.example.": "10.1.0.1", "c.example.": "10.1.0.3"}},
	}
	held := first
	for _, p := range phases {
		q0 := d.queries.Load()
		p.fault()
		var st sourceStatus
		eventually(t, 10*time.Second, p.name+" to be reported", func() bool {
			st = b.sources()["names"]
			return st.SourceState == "disconnected" && strings.Contains(st.Reason, p.reason)
		})
		reported := st.Reason
		time.Sleep(time.Second) // several failed lookups
		if !w.holds(held) {
			t.Fatalf("%s: clients hold %v, want the last good %v", p.name, w.snapshot(), held)
		}
		d.setTargets(p.after)
		p.heal()
		want := map[string][]string{"svc": {}}
		for _, ip := range p.after {
			want["svc"] = append(want["svc"], ip+":8080")
		}
		slices.Sort(want["svc"])
		eventually(t, 10*time.Second, "recovery from "+p.name, func() bool { return w.holds(want) })
		eventually(t, 10*time.Second, "the source to report itself connected", func() bool {
			st = b.sources()["names"]
			return st.SourceState == "connected"
		})
		if st.Restarts != 0 {
			t.Errorf("%s: the plugin was restarted %d times; recovery must not need a restart", p.name, st.Restarts)
		}
		figure(t, "DNS "+p.name, "reported as %q; last good kept; recovered without restart (%d queries during the phase)", relFirstLine(reported), d.queries.Load()-q0)
		held = want
	}
	if s := w.stats(); s.removals != 0 {
		t.Errorf("clients saw removals: %v", s.events)
	}
}

// TestReliabilityConsulFaults: the Consul agent behind the consul plugin is
// stopped, restarted and wiped (a dev agent keeps nothing, so its index
// goes backwards). Clients keep the last good endpoints while it is down,
// the source reports it, and the plugin follows the new catalog without a
// restart. Two bridge replicas on the same agent agree byte for byte.
func TestReliabilityConsulFaults(t *testing.T) {
	agent := consul.Start(t, consul.Options{})
	register := func(id, addr string, port int) {
		t.Helper()
		err := agent.Client().Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: "web", Address: addr, Port: port})
		if err != nil {
			t.Fatal(err)
		}
	}
	register("web-1", "10.2.0.1", 8080)
	register("web-2", "10.2.0.2", 8080)
	plugins := fmt.Sprintf(`plugins:
  - name: catalog
    type: consul
    config:
      address: %q
      services: [web]
      health: any
      wait: 2s
      retry: {initial: 100ms, max: 500ms}
`, agent.Addr)
	r1 := startBridge(t, map[string]string{"plugins.yaml": plugins})
	r2 := startBridge(t, map[string]string{"plugins.yaml": plugins})
	w := newWatcher(t, r1.grpcAddr, "consul-watch", false, false)
	good := map[string][]string{"web": {"10.2.0.1:8080", "10.2.0.2:8080"}}
	eventually(t, 20*time.Second, "the catalog", func() bool { return w.holds(good) })
	eventually(t, 20*time.Second, "the replicas to agree", func() bool { return sameResources(r1.resources(), r2.resources()) })

	agent.Stop()
	var st sourceStatus
	eventually(t, 20*time.Second, "the outage to be reported", func() bool {
		st = r1.sources()["catalog"]
		return st.SourceState == "disconnected"
	})
	time.Sleep(time.Second)
	if !w.holds(good) {
		t.Fatalf("while Consul is down clients hold %v, want the last good %v", w.snapshot(), good)
	}
	figure(t, "Consul stopped", "reported as %q; last good kept", relFirstLine(st.Reason))

	// A dev agent comes back empty: its index starts again from the
	// beginning. The plugin must take the new, smaller catalog.
	agent.Restart()
	register("web-3", "10.2.0.3", 9090)
	wiped := map[string][]string{"web": {"10.2.0.3:9090"}}
	eventually(t, 30*time.Second, "the wiped catalog to be followed", func() bool { return w.holds(wiped) })
	eventually(t, 20*time.Second, "the source to report itself connected", func() bool {
		st = r1.sources()["catalog"]
		return st.SourceState == "connected"
	})
	if st.Restarts != 0 {
		t.Errorf("the plugin was restarted %d times; recovery must not need a restart", st.Restarts)
	}
	register("web-4", "10.2.0.4", 9090)
	eventually(t, 20*time.Second, "a change after the wipe", func() bool {
		return w.holds(map[string][]string{"web": {"10.2.0.3:9090", "10.2.0.4:9090"}})
	})
	eventually(t, 20*time.Second, "the replicas to agree after the wipe", func() bool { return sameResources(r1.resources(), r2.resources()) })
	figure(t, "Consul restarted and wiped", "index went backwards; the plugin followed without a restart; 2 replicas agree")
}
