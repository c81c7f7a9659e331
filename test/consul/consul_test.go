package consul

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestStartRestartStop(t *testing.T) {
	t.Parallel()
	a := Start(t, Options{NodeMeta: map[string]string{"zone": "z1"}})
	c := a.Client()

	node, _, err := c.Catalog().Node(a.NodeName, nil)
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	if got := node.Node.Meta["zone"]; got != "z1" {
		t.Errorf("node meta zone = %q, want z1", got)
	}
	if node.Node.Datacenter != "dc1" {
		t.Errorf("datacenter = %q, want dc1", node.Node.Datacenter)
	}
	if _, err := net.DialTimeout("tcp", a.DNSAddr, time.Second); err != nil {
		t.Errorf("dns address %s: %v", a.DNSAddr, err)
	}

	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "web", Port: 80}); err != nil {
		t.Fatalf("register: %v", err)
	}
	addr := a.Addr
	a.Restart()
	if a.Addr != addr {
		t.Errorf("restart moved the agent from %s to %s", addr, a.Addr)
	}
	// The dev agent keeps its state in memory: the service is gone.
	svcs, _, err := a.Client().Catalog().Services(nil)
	if err != nil {
		t.Fatalf("services after restart: %v", err)
	}
	if _, ok := svcs["web"]; ok {
		t.Errorf("web survived a dev agent restart: %v", svcs)
	}

	a.Stop()
	if _, _, err := a.Client().Catalog().Services(nil); err == nil {
		t.Error("agent still answers after Stop")
	}
	a.Stop() // a second Stop does nothing
}

func TestACL(t *testing.T) {
	t.Parallel()
	a := Start(t, Options{ACL: true, Datacenter: "east"})
	if a.ManagementToken == "" {
		t.Fatal("no management token")
	}

	_, _, err := a.ClientWithToken("00000000-0000-4000-8000-000000000000").Catalog().Services(nil)
	var se api.StatusError
	if !errors.As(err, &se) || se.Code != 403 || !strings.Contains(se.Body, "ACL not found") {
		t.Errorf("unknown token: err = %v, want 403 ACL not found", err)
	}

	anon, _, err := a.ClientWithToken("").Catalog().Services(nil)
	if err != nil || len(anon) != 0 {
		t.Errorf("anonymous token: services = %v, err = %v; want none", anon, err)
	}

	read := a.ReadToken()
	svcs, _, err := a.ClientWithToken(read).Catalog().Services(&api.QueryOptions{Datacenter: "east"})
	if err != nil {
		t.Fatalf("read token: %v", err)
	}
	if _, ok := svcs["consul"]; !ok {
		t.Errorf("read token sees %v, want the consul service", svcs)
	}
}

func TestJoinWAN(t *testing.T) {
	t.Parallel()
	dc1 := Start(t, Options{})
	dc2 := Start(t, Options{Datacenter: "dc2", NodeName: "consul-dc2", JoinWAN: []string{dc1.SerfWANAddr}})
	deadline := time.Now().Add(30 * time.Second)
	for {
		dcs, err := dc1.Client().Catalog().Datacenters()
		if err == nil && len(dcs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dc1 does not see dc2: %v %v", dcs, err)
		}
		time.Sleep(50 * time.Millisecond) // polling, bounded by deadline
	}
	_ = dc2
}
