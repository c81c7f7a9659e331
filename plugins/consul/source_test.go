package consul

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"

	"github.com/xdsbridge/xdsbridge/internal/security/secret"
	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/sdk/overlay"
	consultest "github.com/xdsbridge/xdsbridge/test/consul"
)

// TestAgent runs the tests that can share one dev agent, in parallel. Each
// reads only its own services.
func TestAgent(t *testing.T) {
	a := consultest.Start(t, consultest.Options{NodeMeta: map[string]string{"zone": "agent-zone"}})
	for _, tt := range []struct {
		name string
		run  func(t *testing.T, a *consultest.Agent)
	}{
		{"Lifecycle", testLifecycle},
		{"HealthAndWeights", testHealthAndWeights},
		{"Selection", testSelection},
		{"Datacenters", testDatacenters},
		{"SharedMode", testSharedMode},
		{"Coalesce", testCoalesce},
		{"TokenWithoutACLs", testTokenWithoutACLs},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, a)
		})
	}
}

// testLifecycle registers, re-registers with a new port, tags and meta,
// deregisters and registers a service again.
func testLifecycle(t *testing.T, a *consultest.Agent) {
	c := a.Client()
	w := startSource(t, testConfig(a, "life"), Options{})
	w.waitFor("the first full state", hasFull)
	if v := w.waitFor("first", hasFull); len(v.clusters) != 0 || !v.updates[0].Full {
		t.Fatalf("first update %+v, want an empty full state", v.updates[0])
	}

	reg := &api.AgentServiceRegistration{
		ID: "life-1", Name: "life", Address: "127.0.0.10", Port: 8080,
		Tags: []string{"b", "a"}, Meta: map[string]string{"version": "1"},
	}
	must(t, c.Agent().ServiceRegister(reg))
	w.waitFor("life-1 on 8080", endpointsAre("life", "127.0.0.10:8080/healthy"))
	got, _ := w.cluster("life")
	want := sdk.Endpoint{
		Address: "127.0.0.10", Port: 8080, Weight: 1, Health: sdk.Healthy,
		Locality: sdk.Locality{Region: "dc1"},
		Metadata: map[string]any{"version": "1", TagsKey: []any{"a", "b"}},
	}
	if d := cmp.Diff(want, got.Endpoints[0]); d != "" {
		t.Errorf("endpoint (-want +got):\n%s", d)
	}

	// Re-register with a new port, tags and meta.
	reg.Port, reg.Tags, reg.Meta = 9090, []string{"c"}, map[string]string{"version": "2", "owner": "x"}
	must(t, c.Agent().ServiceRegister(reg))
	w.waitFor("life-1 on 9090", endpointsAre("life", "127.0.0.10:9090/healthy"))
	got, _ = w.cluster("life")
	if d := cmp.Diff(map[string]any{"version": "2", "owner": "x", TagsKey: []any{"c"}}, got.Endpoints[0].Metadata); d != "" {
		t.Errorf("metadata after re-register (-want +got):\n%s", d)
	}

	must(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "life-2", Name: "life", Address: "127.0.0.11", Port: 80}))
	w.waitFor("two instances", endpointsAre("life", "127.0.0.10:9090/healthy", "127.0.0.11:80/healthy"))
	must(t, c.Agent().ServiceDeregister("life-1"))
	w.waitFor("life-1 gone", endpointsAre("life", "127.0.0.11:80/healthy"))

	// The last instance leaves: the service leaves the catalog and its
	// cluster is removed.
	mark := w.mark()
	must(t, c.Agent().ServiceDeregister("life-2"))
	w.waitFor("cluster removed", absent("life"))
	if !slices.ContainsFunc(w.since(mark), func(u sdk.Update) bool { return slices.Contains(u.RemovedClusters, "life") }) {
		t.Error("no update removed cluster life")
	}

	reg.Port = 7070
	must(t, c.Agent().ServiceRegister(reg))
	w.waitFor("life back on 7070", endpointsAre("life", "127.0.0.10:7070/healthy"))
	for i, u := range w.since(1) {
		if u.Full {
			t.Errorf("update %d is a full state; want change sets after the first", i+1)
		}
	}
}

// testHealthAndWeights flips a TTL check through passing, warning,
// critical and maintenance and watches three health thresholds.
func testHealthAndWeights(t *testing.T, a *consultest.Agent) {
	c := a.Client()
	cfg := testConfig(a, "flip")
	cfg.Locality.ZoneKey = "zone"
	passing := startSource(t, cfg, Options{})
	cfg.Health = HealthWarning
	warning := startSource(t, cfg, Options{})
	cfg.Health = HealthAny
	anyHealth := startSource(t, cfg, Options{})

	must(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "flip-1", Name: "flip", Address: "127.0.0.20", Port: 80,
		Weights: &api.AgentWeights{Passing: 10, Warning: 2},
		Check:   &api.AgentServiceCheck{CheckID: "flip-1-ttl", TTL: "10m", Status: api.HealthPassing},
	}))
	// A second, always passing instance whose warning weight is 0.
	must(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "flip-2", Name: "flip", Address: "127.0.0.21", Port: 80,
		Weights: &api.AgentWeights{Passing: 1, Warning: 0},
		Check:   &api.AgentServiceCheck{CheckID: "flip-2-ttl", TTL: "10m", Status: api.HealthPassing},
	}))
	both := []string{"127.0.0.20:80/healthy", "127.0.0.21:80/healthy"}
	passing.waitFor("passing: both", endpointsAre("flip", both...))
	warning.waitFor("warning: both", endpointsAre("flip", both...))
	v := anyHealth.waitFor("any: both", endpointsAre("flip", both...))
	ep := v.clusters["flip"].Endpoints[0]
	if ep.Weight != 10 || ep.Locality != (sdk.Locality{Region: "dc1", Zone: "agent-zone"}) {
		t.Errorf("passing endpoint weight %d locality %+v; want 10 in dc1/agent-zone", ep.Weight, ep.Locality)
	}

	steps := []struct {
		name    string
		flip    func() error
		passing []string
		warning []string
		any     []string
		weight  uint32 // of flip-1 in the warning source, when served
	}{
		{
			name:    "warning",
			flip:    func() error { return c.Agent().WarnTTL("flip-1-ttl", "slow") },
			passing: []string{"127.0.0.21:80/healthy"},
			warning: both[:0:0], any: nil, weight: 2,
		},
		{
			name:    "critical",
			flip:    func() error { return c.Agent().FailTTL("flip-1-ttl", "down") },
			passing: []string{"127.0.0.21:80/healthy"},
			warning: []string{"127.0.0.21:80/healthy"},
			any:     []string{"127.0.0.20:80/unhealthy", "127.0.0.21:80/healthy"},
		},
		{
			name:    "passing again",
			flip:    func() error { return c.Agent().PassTTL("flip-1-ttl", "ok") },
			passing: both, warning: both, any: both, weight: 10,
		},
		{
			name:    "maintenance",
			flip:    func() error { return c.Agent().EnableServiceMaintenance("flip-1", "deploy") },
			passing: []string{"127.0.0.21:80/healthy"},
			warning: []string{"127.0.0.21:80/healthy"},
			any:     []string{"127.0.0.20:80/draining", "127.0.0.21:80/healthy"},
		},
	}
	// The warning step is special: flip-1 is degraded (weight 2) and shown
	// to warning and any sources.
	steps[0].warning = []string{"127.0.0.20:80/degraded", "127.0.0.21:80/healthy"}
	steps[0].any = []string{"127.0.0.20:80/degraded", "127.0.0.21:80/healthy"}

	for _, s := range steps {
		must(t, s.flip())
		passing.waitFor(s.name+" (passing source)", endpointsAre("flip", s.passing...))
		v := warning.waitFor(s.name+" (warning source)", endpointsAre("flip", s.warning...))
		anyHealth.waitFor(s.name+" (any source)", endpointsAre("flip", s.any...))
		if s.weight != 0 {
			if got := v.clusters["flip"].Endpoints[0].Weight; got != s.weight {
				t.Errorf("%s: flip-1 weight %d, want %d", s.name, got, s.weight)
			}
		}
	}

	// Both instances out of a passing source: the cluster stays, empty.
	must(t, c.Agent().FailTTL("flip-2-ttl", "down"))
	passing.waitFor("empty cluster", endpointsAre("flip"))
	// A warning instance with warning weight 0 gets no traffic: left out.
	must(t, c.Agent().WarnTTL("flip-2-ttl", "slow"))
	must(t, c.Agent().DisableServiceMaintenance("flip-1"))
	must(t, c.Agent().PassTTL("flip-1-ttl", "ok"))
	warning.waitFor("weight 0 left out", endpointsAre("flip", "127.0.0.20:80/healthy"))
	anyHealth.waitFor("weight 0 left out", endpointsAre("flip", "127.0.0.20:80/healthy"))
}

// testSelection covers tags, node_meta, filter, the allow list, locality
// keys, cluster_name and overlays, all on the first full state.
func testSelection(t *testing.T, a *consultest.Agent) {
	c := a.Client()
	metaA := map[string]string{"zone": "za", "rack": "r1", "env": "prod"}
	metaB := map[string]string{"zone": "zb", "env": "dev"}
	registerExternal(t, c, "sel-node-a", "10.1.0.1", metaA,
		&api.AgentService{ID: "sel-a", Service: "sel", Port: 80, Tags: []string{"prod", "canary"}}, api.HealthPassing)
	registerExternal(t, c, "sel-node-b", "10.1.0.2", metaB,
		&api.AgentService{ID: "sel-b", Service: "sel", Port: 80, Tags: []string{"PROD"}}, api.HealthPassing)
	registerExternal(t, c, "sel-node-a", "10.1.0.1", metaA,
		&api.AgentService{ID: "other-a", Service: "sel-other", Port: 81, Tags: []string{"dev"}}, api.HealthPassing)

	ov, err := overlay.Parse(map[string]any{"connect_timeout": "2s"})
	must(t, err)
	tests := []struct {
		name string
		edit func(*Config)
		want map[string][]string // cluster → "addr:port/zone/subzone"
	}{
		{name: "all", edit: func(*Config) {}, want: map[string][]string{
			"sel": {"10.1.0.1:80//", "10.1.0.2:80//"}, "sel-other": {"10.1.0.1:81//"},
		}},
		{name: "tags, case-insensitive", edit: func(c *Config) { c.Tags = []string{"prod"} }, want: map[string][]string{
			"sel": {"10.1.0.1:80//", "10.1.0.2:80//"},
		}},
		{name: "all tags must match", edit: func(c *Config) { c.Tags = []string{"prod", "canary"} }, want: map[string][]string{
			"sel": {"10.1.0.1:80//"},
		}},
		{name: "node meta", edit: func(c *Config) { c.NodeMeta = map[string]string{"env": "prod"} }, want: map[string][]string{
			"sel": {"10.1.0.1:80//"}, "sel-other": {"10.1.0.1:81//"},
		}},
		{name: "filter", edit: func(c *Config) { c.Filter = `Node.Meta.env == "dev"` }, want: map[string][]string{
			"sel": {"10.1.0.2:80//"},
		}},
		{name: "allow list and locality", edit: func(c *Config) {
			c.Services = []string{"sel"}
			c.Locality = LocalityConfig{ZoneKey: "zone", SubZoneKey: "rack"}
		}, want: map[string][]string{
			"sel": {"10.1.0.1:80/za/r1", "10.1.0.2:80/zb/"},
		}},
		{name: "cluster name and overlay", edit: func(c *Config) {
			c.ClusterName = "{{.Service}}.consul"
			c.Overlays = map[string]map[string]any{"sel": {"connect_timeout": "2s"}}
		}, want: map[string][]string{
			"sel.consul": {"10.1.0.1:80//", "10.1.0.2:80//"}, "sel-other.consul": {"10.1.0.1:81//"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(a, "sel", "sel-other")
			tt.edit(&cfg)
			v := startSource(t, cfg, Options{}).waitFor("full state", hasFull)
			got := map[string][]string{}
			for name, cl := range v.clusters {
				got[name] = []string{}
				for _, ep := range cl.Endpoints {
					got[name] = append(got[name], fmt.Sprintf("%s:%d/%s/%s", ep.Address, ep.Port, ep.Locality.Zone, ep.Locality.SubZone))
				}
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("clusters (-want +got):\n%s", d)
			}
			if cl, ok := v.clusters["sel.consul"]; ok && string(cl.Overlay) != string(ov) {
				t.Errorf("overlay %x, want %x", cl.Overlay, ov)
			}
			if cl, ok := v.clusters["sel-other.consul"]; ok && cl.Overlay != nil {
				t.Errorf("sel-other has overlay %x, want none", cl.Overlay)
			}
		})
	}
}

// testDatacenters covers what a single dev agent allows: its datacenter by
// name, and an unreachable datacenter listed first.
func testDatacenters(t *testing.T, a *consultest.Agent) {
	c := a.Client()
	registerExternal(t, c, "dc-node", "10.2.0.1", nil, &api.AgentService{ID: "dcs-1", Service: "dcs", Port: 80}, "")

	cfg := testConfig(a, "dcs")
	cfg.Datacenters = []string{"dc1"}
	v := startSource(t, cfg, Options{}).waitFor("dc1", endpointsAre("dcs", "10.2.0.1:80/healthy"))
	if ep := v.clusters["dcs"].Endpoints[0]; ep.Priority != 0 || ep.Locality.Region != "dc1" {
		t.Errorf("priority %d region %q, want 0 dc1", ep.Priority, ep.Locality.Region)
	}

	// An unknown datacenter first: the full state still goes out once dc1
	// is read, dc1's endpoints have priority 1, and the status names the
	// failing datacenter.
	cfg.Datacenters = []string{"nowhere", "dc1"}
	w := startSource(t, cfg, Options{})
	v = w.waitFor("dc1 at priority 1", endpointsAre("dcs", "10.2.0.1:80/healthy"))
	if ep := v.clusters["dcs"].Endpoints[0]; ep.Priority != 1 || ep.Locality.Region != "dc1" {
		t.Errorf("priority %d region %q, want 1 dc1", ep.Priority, ep.Locality.Region)
	}
	w.waitFor("disconnected naming nowhere", statusIs(sdk.Disconnected, "datacenter nowhere"))
}

// testTokenWithoutACLs: with ACLs off, Consul ignores a token and answers
// the token check with 401; the source is not disconnected for it.
func testTokenWithoutACLs(t *testing.T, a *consultest.Agent) {
	cfg := testConfig(a, "tok")
	cfg.Token = secret.New("00000000-0000-4000-8000-000000000001")
	w := startSource(t, cfg, Options{})
	w.waitFor("connected", func(v view) bool { return v.fulls > 0 && v.status.State == sdk.Connected })
	time.Sleep(2 * cfg.Retry.Max) // the check has answered, and is retried
	registerExternal(t, a.Client(), "tok-node", "10.3.0.1", nil, &api.AgentService{ID: "tok-1", Service: "tok", Port: 80}, "")
	w.waitFor("tok", endpointsAre("tok", "10.3.0.1:80/healthy"))
	for _, u := range w.since(0) {
		if u.Status != nil && u.Status.State != sdk.Connected {
			t.Errorf("status %v %q with ACLs off", u.Status.State, u.Status.Reason)
		}
	}
}

// testSharedMode watches more services than the connection budget allows
// blocking queries for, then few enough to go back to one each.
func testSharedMode(t *testing.T, a *consultest.Agent) {
	c := a.Client()
	var names []string
	for i := range 12 {
		name := fmt.Sprintf("shr-%02d", i)
		names = append(names, name)
		must(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: name, Name: name, Address: "127.0.0.30", Port: 1000 + i,
			Check: &api.AgentServiceCheck{CheckID: name + "-ttl", TTL: "10m", Status: api.HealthPassing},
		}))
	}
	cfg := testConfig(a, names...)
	cfg.MaxConnections = 5 // shared: 3 watches + 2 workers; dedicated up to 4 services
	cfg.Locality.ZoneKey = "zone"
	var cc connCounter
	w := startSource(t, cfg, Options{DialContext: cc.dial})
	v := w.waitFor("all services", func(v view) bool {
		return len(v.clusters) == 12 && endpointsAre("shr-11", "127.0.0.30:1011/healthy")(v)
	})
	if v.fulls != 1 {
		t.Errorf("%d full states, want 1", v.fulls)
	}

	// A check flip moves no catalog index: the health-state query finds it.
	must(t, c.Agent().FailTTL("shr-07-ttl", "down"))
	w.waitFor("shr-07 critical", endpointsAre("shr-07", []string{}...))
	must(t, c.Agent().PassTTL("shr-07-ttl", "up"))
	w.waitFor("shr-07 passing", endpointsAre("shr-07", "127.0.0.30:1007/healthy"))
	// A new port moves the catalog index: the nodes are swept.
	must(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "shr-03", Name: "shr-03", Address: "127.0.0.30", Port: 2003,
		Check: &api.AgentServiceCheck{CheckID: "shr-03-ttl", TTL: "10m", Status: api.HealthPassing},
	}))
	w.waitFor("shr-03 on 2003", endpointsAre("shr-03", "127.0.0.30:2003/healthy"))
	// An instance on a new node, the node's metadata changing, and the
	// instance leaving while the service stays.
	ext := &api.AgentService{ID: "shr-00-ext", Service: "shr-00", Port: 3000}
	registerExternal(t, c, "shr-ext", "10.5.0.1", map[string]string{"zone": "z1"}, ext, "")
	w.waitFor("shr-00 on a new node", endpointsAre("shr-00", "127.0.0.30:1000/healthy", "10.5.0.1:3000/healthy"))
	registerExternal(t, c, "shr-ext", "10.5.0.1", map[string]string{"zone": "z2"}, ext, "")
	w.waitFor("shr-00 ext in zone z2", func(v view) bool {
		eps := v.clusters["shr-00"].Endpoints
		return len(eps) == 2 && eps[1].Address == "10.5.0.1" && eps[1].Locality.Zone == "z2"
	})
	_, err := c.Catalog().Deregister(&api.CatalogDeregistration{Node: "shr-ext", ServiceID: "shr-00-ext"}, nil)
	must(t, err)
	w.waitFor("shr-00 ext gone", endpointsAre("shr-00", "127.0.0.30:1000/healthy"))
	must(t, c.Agent().ServiceDeregister("shr-11"))
	w.waitFor("shr-11 removed", absent("shr-11"))

	// Down to 3 services: back to a blocking query each.
	for _, n := range names[3:11] {
		must(t, c.Agent().ServiceDeregister(n))
	}
	w.waitFor("3 services left", func(v view) bool { return len(v.clusters) == 3 })
	must(t, c.Agent().FailTTL("shr-01-ttl", "down"))
	w.waitFor("shr-01 critical", endpointsAre("shr-01", []string{}...))

	if p := cc.peak.Load(); p > int64(cfg.MaxConnections) {
		t.Errorf("peak %d connections to Consul, budget %d", p, cfg.MaxConnections)
	}
}

// testCoalesce registers a burst of instances and expects few updates.
func testCoalesce(t *testing.T, a *consultest.Agent) {
	c := a.Client()
	cfg := testConfig(a, "burst")
	cfg.Coalesce = time.Second // generous, so a slow machine still sees one burst
	w := startSource(t, cfg, Options{})
	w.waitFor("full state", hasFull)
	mark := w.mark()
	const n = 40
	for i := range n {
		registerExternal(t, c, fmt.Sprintf("burst-node-%d", i), fmt.Sprintf("10.3.0.%d", i+1), nil,
			&api.AgentService{ID: "burst", Service: "burst", Port: 80}, "")
	}
	w.waitFor("all instances", func(v view) bool { return len(v.clusters["burst"].Endpoints) == n })
	if got := len(w.since(mark)); got > 4 {
		t.Errorf("%d updates for a burst of %d registrations, want at most 4", got, n)
	}
}

// TestConsulRestart stops Consul under a running source and starts it
// again: the source keeps its endpoints, reports the outage, and resyncs
// with a full state.
func TestConsulRestart(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t, consultest.Options{})
	must(t, a.Client().Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "rs-1", Name: "rs", Address: "127.0.0.40", Port: 80}))
	w := startSource(t, testConfig(a, "rs"), Options{})
	w.waitFor("rs", endpointsAre("rs", "127.0.0.40:80/healthy"))
	w.waitFor("connected", statusIs(sdk.Connected, ""))

	mark := w.mark()
	a.Stop()
	w.waitFor("disconnected", statusIs(sdk.Disconnected, "connection refused"))
	if _, ok := w.cluster("rs"); !ok {
		t.Fatal("cluster rs dropped while Consul is down")
	}
	for _, u := range w.since(mark) {
		if u.Full || len(u.Clusters) > 0 || len(u.RemovedClusters) > 0 {
			t.Errorf("data update while Consul is down: %+v", u)
		}
	}

	// A dev agent restarts empty: register again, on a new port.
	a.Restart()
	must(t, a.Client().Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "rs-1", Name: "rs", Address: "127.0.0.40", Port: 81}))
	w.waitFor("resynced", func(v view) bool {
		return v.fulls >= 2 && v.status.State == sdk.Connected && endpointsAre("rs", "127.0.0.40:81/healthy")(v)
	})
	// Connected comes with the full state, not before it.
	for _, u := range w.since(mark) {
		if u.Status != nil && u.Status.State == sdk.Connected && !u.Full {
			t.Errorf("connected reported outside a full state: %+v", u)
		}
	}
}

// TestACL runs sources against an agent with ACLs on and default policy
// deny: with a read token, without one, with an unknown one, and with one
// revoked while running, then replaced.
func TestACL(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t, consultest.Options{ACL: true})
	c := a.Client()
	for i, name := range []string{"acl", "acl-b", "acl-c", "acl-d"} {
		must(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: name + "-1", Name: name, Address: "127.0.0.50", Port: 80 + i}))
	}
	token := a.ReadToken()
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "token"), []byte(token+"\n"), 0o600))

	var logs syncBuffer
	logger := slogTo(&logs)

	// Read tokens from a file, with the default wait: blocking queries do
	// not wake when their token is revoked, the token check does. good
	// watches one service; tight watches four within max_connections 5,
	// of which the token check holds one (so the services share a worker).
	goodCfg := testConfig(a, "acl")
	goodCfg.TokenFile = "token"
	goodCfg.Retry.Max = 5 * time.Second
	if goodCfg.Wait != DefaultConfig().Wait {
		t.Fatalf("wait %s, want the default %s", goodCfg.Wait, DefaultConfig().Wait)
	}
	good := startSource(t, goodCfg, Options{Logger: logger, BaseDir: dir})
	tightCfg := goodCfg
	tightCfg.Services = []string{"acl", "acl-b", "acl-c", "acl-d"}
	tightCfg.MaxConnections = 5
	var cc connCounter
	tight := startSource(t, tightCfg, Options{Logger: logger, BaseDir: dir, DialContext: cc.dial})
	good.waitFor("acl with token", endpointsAre("acl", "127.0.0.50:80/healthy"))
	tight.waitFor("four services", func(v view) bool { return len(v.clusters) == 4 && endpointsAre("acl-d", "127.0.0.50:83/healthy")(v) })

	// No token: the anonymous token reads nothing.
	anon := startSource(t, testConfig(a, "acl"), Options{Logger: logger})
	anon.waitFor("permission denied without token", statusIs(sdk.Disconnected, "permission denied"))

	// An unknown token.
	cfg := testConfig(a, "acl")
	cfg.Token = secret.New("00000000-0000-4000-8000-000000000000")
	unknown := startSource(t, cfg, Options{Logger: logger})
	unknown.waitFor("permission denied with unknown token", statusIs(sdk.Disconnected, "ACL not found"))
	for _, w := range []*watch{anon, unknown} {
		if v := w.waitFor("", func(view) bool { return true }); v.fulls != 0 {
			t.Errorf("a source that reads nothing sent a full state: %+v", v.updates)
		}
	}

	// Revoke the token: the sources say so within retry.max, and keep what
	// they serve.
	sources := map[string]*watch{"good": good, "tight": tight}
	marks := map[string]int{}
	for name, w := range sources {
		w.waitFor(name+" connected", statusIs(sdk.Connected, ""))
		marks[name] = w.mark()
	}
	tokens, _, err := c.ACL().TokenList(nil)
	must(t, err)
	revoked := time.Now()
	for _, tok := range tokens {
		if tok.SecretID == token {
			_, err := c.ACL().TokenDelete(tok.AccessorID, nil)
			must(t, err)
		}
	}
	for name, w := range sources {
		w.waitFor(name+": token revoked", statusIs(sdk.Disconnected, "permission denied: token revoked"))
		took := time.Since(revoked)
		t.Logf("%s: revocation noticed after %v", name, took)
		if took > goodCfg.Retry.Max {
			t.Errorf("%s: revocation noticed after %v, want within retry.max %v", name, took, goodCfg.Retry.Max)
		}
		if _, ok := w.cluster("acl"); !ok {
			t.Errorf("%s: cluster acl dropped after the token was revoked", name)
		}
		for _, u := range w.since(marks[name]) {
			if u.Full || len(u.Clusters) > 0 || len(u.RemovedClusters) > 0 {
				t.Errorf("%s: data update after revocation: %+v", name, u)
			}
		}
	}

	// A new token in the file is picked up: connected again, with a full
	// state.
	for name, w := range sources {
		marks[name] = w.mark()
	}
	newToken := a.ReadToken()
	must(t, os.WriteFile(filepath.Join(dir, "token"), []byte(newToken+"\n"), 0o600))
	for name, w := range sources {
		w.waitFor(name+" connected with the new token", func(v view) bool {
			return v.status.State == sdk.Connected && endpointsAre("acl", "127.0.0.50:80/healthy")(v)
		})
		if !slices.ContainsFunc(w.since(marks[name]), func(u sdk.Update) bool { return u.Full }) {
			t.Errorf("%s: no full state after the token was replaced", name)
		}
	}
	if p := cc.peak.Load(); p > int64(tightCfg.MaxConnections) {
		t.Errorf("tight: peak %d connections to Consul, budget %d", p, tightCfg.MaxConnections)
	}

	out := logs.String()
	if !strings.Contains(out, "permission denied") {
		t.Errorf("no permission denied log line in:\n%s", out)
	}
	for _, secret := range []string{token, newToken, a.ManagementToken, "00000000-0000-4000-8000-000000000000"} {
		if strings.Contains(out, secret) {
			t.Errorf("a token appears in the log:\n%s", out)
		}
	}
}

// TestDatacenterFailover runs two dev agents in datacenters dc1 and dc2,
// joined over the WAN, and reads both through dc1's agent, with the default
// wait, in dedicated and in shared mode. dc2 restarts empty after an outage
// long enough for dc1's agent to back off its own reconnections: dc1's
// agent then still holds dc2's state from before the restart, under
// indexes the restarted dc2 has not reached.
func TestDatacenterFailover(t *testing.T) {
	t.Parallel()
	dc1 := consultest.Start(t, consultest.Options{})
	dc2 := consultest.Start(t, consultest.Options{Datacenter: "dc2", NodeName: "consul-dc2", JoinWAN: []string{dc1.SerfWANAddr}})
	registerDC2 := func(port int) {
		registerExternal(t, dc2.Client(), "mdc-node-2", "10.7.0.2", nil, &api.AgentService{ID: "mdc-2", Service: "mdc", Port: port}, api.HealthPassing)
	}
	registerExternal(t, dc1.Client(), "mdc-node-1", "10.7.0.1", nil, &api.AgentService{ID: "mdc-1", Service: "mdc", Port: 80}, api.HealthPassing)
	registerDC2(80)
	// Four more services in dc1 put the shared source over its budget.
	extra := []string{"mdc-w", "mdc-x", "mdc-y", "mdc-z"}
	for i, name := range extra {
		registerExternal(t, dc1.Client(), "mdc-node-1", "10.7.0.1", nil, &api.AgentService{ID: name + "-1", Service: name, Port: 90 + i}, api.HealthPassing)
	}

	cfg := testConfig(dc1, "mdc")
	cfg.Datacenters = []string{"dc1", "dc2"}
	if cfg.Wait != DefaultConfig().Wait {
		t.Fatalf("wait %s, want the default %s", cfg.Wait, DefaultConfig().Wait)
	}
	// Shared: 6 services over both datacenters, budget 7 less one catalog
	// query per datacenter.
	sharedCfg := cfg
	sharedCfg.Services = append([]string{"mdc"}, extra...)
	sharedCfg.MaxConnections = 7
	var logs syncBuffer
	sources := map[string]*watch{
		"dedicated": startSource(t, cfg, Options{}),
		"shared":    startSource(t, sharedCfg, Options{Logger: slogTo(&logs)}),
	}
	waitAll := func(desc string, pred func(v view) bool) {
		t.Helper()
		for name, w := range sources {
			w.waitFor(name+": "+desc, pred)
		}
	}
	waitAll("both datacenters", endpointsAre("mdc", "10.7.0.1:80/healthy", "10.7.0.2:80/healthy"))
	for name, w := range sources {
		v := w.waitFor("", hasFull)
		eps := v.clusters["mdc"].Endpoints
		if eps[0].Priority != 0 || eps[0].Locality.Region != "dc1" || eps[1].Priority != 1 || eps[1].Locality.Region != "dc2" {
			t.Errorf("%s: endpoints %+v, want dc1 at priority 0 and dc2 at priority 1", name, eps)
		}
	}
	if !strings.Contains(logs.String(), "shared=true") {
		t.Errorf("the shared source did not switch to shared mode:\n%s", logs.String())
	}
	// Move dc2's indexes well past where the restarted dc2 will start.
	for port := 90; port < 100; port++ {
		registerDC2(port)
	}
	waitAll("dc2 on 99", endpointsAre("mdc", "10.7.0.1:80/healthy", "10.7.0.2:99/healthy"))

	// dc2 goes away: its endpoints stay, dc1's changes still flow.
	dc2.Stop()
	waitAll("dc2 failing", statusIs(sdk.Disconnected, "datacenter dc2"))
	registerExternal(t, dc1.Client(), "mdc-node-1", "10.7.0.1", nil, &api.AgentService{ID: "mdc-1", Service: "mdc", Port: 81}, api.HealthPassing)
	waitAll("dc1 change with dc2 down", endpointsAre("mdc", "10.7.0.1:81/healthy", "10.7.0.2:99/healthy"))
	// An outage of some seconds: dc1's agent retries dc2 ever more slowly.
	time.Sleep(3 * time.Second)

	// dc2 comes back (empty, as dev agents do) and is registered again.
	marks := map[string]int{}
	for name, w := range sources {
		marks[name] = w.mark()
	}
	dc2.Restart()
	registerDC2(82)
	waitAll("dc2 back", func(v view) bool {
		return v.status.State == sdk.Connected && endpointsAre("mdc", "10.7.0.1:81/healthy", "10.7.0.2:82/healthy")(v)
	})
	// Later changes in dc2 arrive well within wait.
	registerDC2(83)
	waitAll("dc2 change after its restart", endpointsAre("mdc", "10.7.0.1:81/healthy", "10.7.0.2:83/healthy"))
	for name, w := range sources {
		updates := w.since(marks[name])
		if !slices.ContainsFunc(updates, func(u sdk.Update) bool { return u.Full }) {
			t.Errorf("%s: no full state after dc2 came back", name)
		}
		for _, u := range updates {
			for _, c := range u.Clusters {
				for _, ep := range c.Endpoints {
					if ep.Address == "10.7.0.2" && ep.Port == 99 {
						t.Errorf("%s: dc2's state from before its restart served after it: %+v", name, u)
					}
				}
			}
		}
	}
}
