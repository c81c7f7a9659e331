package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/consul/api"

	"github.com/xdsbridge/xdsbridge/test/consul"
)

func register(t *testing.T, c *api.Client, id string, port int, status string) {
	t.Helper()
	err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: id, Name: "web", Address: "127.0.0.1", Port: port, Tags: []string{"v1"},
		Check: &api.AgentServiceCheck{CheckID: "check-" + id, TTL: "10m", Status: status},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestConsul follows a real Consul agent through the consul plugin running
// out of process: registrations, health flips, deregistration, and the agent
// stopped (endpoints kept, source reported disconnected) and restarted.
func TestConsul(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a consul agent")
	}
	agent := consul.Start(t, consul.Options{})
	c := agent.Client()
	register(t, c, "web-1", 8001, api.HealthPassing)
	register(t, c, "web-2", 8002, api.HealthPassing)

	b := startBridge(t, map[string]string{"plugins.yaml": fmt.Sprintf(`plugins:
  - name: consul-dc1
    type: consul
    config:
      address: %s
      services: [web]
      wait: 2s
      retry: {initial: 100ms, max: 500ms}
`, agent.Addr)})
	s := newSotw(t, dial(t, b.grpcAddr), "envoy-consul")
	s.subscribe(resource.EndpointType, "web")
	next := func(want []int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			r := s.recvType(resource.EndpointType, time.Until(deadline))
			s.ack(r, "web")
			got := ports(cla(t, r.GetResources()[0]))
			if slices.Equal(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("web ports %v, want %v", got, want)
			}
		}
	}
	next([]int{8001, 8002})

	// A failing check takes the instance out (health: passing is the default).
	if err := c.Agent().UpdateTTL("check-web-2", "down", api.HealthCritical); err != nil {
		t.Fatal(err)
	}
	next([]int{8001})
	if err := c.Agent().UpdateTTL("check-web-2", "up", api.HealthPassing); err != nil {
		t.Fatal(err)
	}
	next([]int{8001, 8002})
	// Re-register with a new port.
	register(t, c, "web-2", 8003, api.HealthPassing)
	next([]int{8001, 8003})

	// Consul goes away: endpoints stay, the source says why.
	agent.Stop()
	eventually(t, 20*time.Second, "the source to report consul unreachable", func() bool {
		return b.sources()["consul-dc1"].SourceState == "disconnected"
	})
	s.quiet(300 * time.Millisecond)
	agent.Restart()
	eventually(t, 30*time.Second, "the source to reconnect", func() bool {
		return b.sources()["consul-dc1"].SourceState == "connected"
	})
	// A dev agent forgets its catalog on restart: re-registering is the
	// resync the clients see.
	register(t, c, "web-1", 8001, api.HealthPassing)
	register(t, c, "web-4", 8004, api.HealthPassing)
	next([]int{8001, 8004})
}

// TestConsulACL: without a token an ACL-enabled agent denies the source,
// which says so and serves nothing it did not have; with a token it works,
// and when that token is revoked the source says so in /debug/sources
// within retry.max (under the default wait of 5m) and keeps its endpoints.
func TestConsulACL(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a consul agent")
	}
	agent := consul.Start(t, consul.Options{ACL: true})
	mgmt := agent.ClientWithToken(agent.ManagementToken)
	register(t, mgmt, "web-1", 8001, api.HealthPassing)
	token := agent.ReadToken()

	b := startBridge(t, map[string]string{"plugins.yaml": fmt.Sprintf(`aggregator:
  ready_timeout: 1s
plugins:
  - name: denied
    type: consul
    config: {address: %s, services: [web]}
  - name: allowed
    type: consul
    config: {address: %s, services: [web], token: %s, retry: {max: 3s}}
`, agent.Addr, agent.Addr, token)})
	eventually(t, 20*time.Second, "the tokenless source to report permission denied", func() bool {
		st := b.sources()["denied"]
		return st.SourceState == "disconnected" && containsFold(st.Reason, "permission denied")
	})
	s := newSotw(t, dial(t, b.grpcAddr), "acl")
	s.subscribe(resource.EndpointType, "web")
	r := s.recvType(resource.EndpointType, 20*time.Second)
	if got := ports(cla(t, r.GetResources()[0])); !slices.Equal(got, []int{8001}) {
		t.Fatalf("web ports %v", got)
	}
	s.ack(r, "web")
	eventually(t, 20*time.Second, "the source with a token to report connected", func() bool {
		return b.sources()["allowed"].SourceState == "connected"
	})

	// Revoke the token.
	tokens, _, err := mgmt.ACL().TokenList(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range tokens {
		if tok.SecretID == token {
			if _, err := mgmt.ACL().TokenDelete(tok.AccessorID, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, 3*time.Second, "the source to report its token revoked within retry.max", func() bool {
		st := b.sources()["allowed"]
		return st.SourceState == "disconnected" && containsFold(st.Reason, "permission denied: token revoked")
	})
	// Its endpoints stay: no update to the subscribed client, and a new
	// client gets them.
	s.quiet(500 * time.Millisecond)
	s2 := newSotw(t, dial(t, b.grpcAddr), "acl-after-revocation")
	s2.subscribe(resource.EndpointType, "web")
	r = s2.recvType(resource.EndpointType, 20*time.Second)
	if got := ports(cla(t, r.GetResources()[0])); !slices.Equal(got, []int{8001}) {
		t.Fatalf("web ports %v after the token was revoked, want [8001]", got)
	}
	if b.log.contains(token) {
		t.Fatal("the ACL token appears in xdsbridge's log")
	}
}
