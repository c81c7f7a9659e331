package e2e

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/miekg/dns"

	"github.com/xdsbridge/xdsbridge/test/dnsserver"
)

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

func (s *syncBuffer) contains(sub string) bool { return strings.Contains(s.String(), sub) }

// TestDNS follows SRV records in a real BIND server through the dns plugin
// running out of process: add, re-prioritise, remove, NXDOMAIN, and the
// server stopped (endpoints kept) and back.
func TestDNS(t *testing.T) {
	if testing.Short() {
		t.Skip("needs named")
	}
	srv := dnsserver.Start(t, dnsserver.Config{Records: []string{
		"_http._tcp.web 1 IN SRV 10 5 8001 a",
		"a 1 IN A 127.0.0.1",
	}})
	name := "_http._tcp.web." + srv.Zone()
	b := startBridge(t, map[string]string{"plugins.yaml": fmt.Sprintf(`plugins:
  - name: dns
    type: dns
    config:
      servers: [%s]
      min_refresh: 100ms
      max_refresh: 1s
      max_retry_interval: 500ms
      names:
        - {name: %s, cluster: web}
`, srv.Addr(), name)})
	s := newSotw(t, dial(t, b.grpcAddr), "envoy-dns")
	s.subscribe(resource.EndpointType, "web")
	want := func(what string, priorities map[int]uint32) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			r := s.recvType(resource.EndpointType, time.Until(deadline))
			s.ack(r, "web")
			got := map[int]uint32{}
			for _, l := range cla(t, r.GetResources()[0]).GetEndpoints() {
				for _, e := range l.GetLbEndpoints() {
					got[int(e.GetEndpoint().GetAddress().GetSocketAddress().GetPortValue())] = l.GetPriority()
				}
			}
			if fmt.Sprint(got) == fmt.Sprint(priorities) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: got port→priority %v, want %v", what, got, priorities)
			}
		}
	}
	want("initial", map[int]uint32{8001: 0})

	srv.Add(t, "_http._tcp.web 1 IN SRV 20 5 8002 a")
	want("a lower-priority record", map[int]uint32{8001: 0, 8002: 1})

	srv.Replace(t, "_http._tcp.web", dns.TypeSRV, "_http._tcp.web 1 IN SRV 30 5 8001 a", "_http._tcp.web 1 IN SRV 20 5 8002 a")
	want("re-prioritised", map[int]uint32{8002: 0, 8001: 1})

	srv.Stop(t)
	eventually(t, 20*time.Second, "the source to report the server down", func() bool {
		return b.sources()["dns"].SourceState == "disconnected"
	})
	s.quiet(300 * time.Millisecond) // endpoints kept
	srv.Restart(t)
	eventually(t, 20*time.Second, "the source to recover", func() bool {
		return b.sources()["dns"].SourceState == "connected"
	})

	srv.Replace(t, "_http._tcp.web", dns.TypeSRV)
	r := s.recvType(resource.EndpointType, 20*time.Second)
	if got := ports(cla(t, r.GetResources()[0])); len(got) != 0 {
		t.Fatalf("after NXDOMAIN: ports %v, want none", got)
	}
	s.ack(r, "web")
	srv.Add(t, "_http._tcp.web 1 IN SRV 10 5 8005 a")
	r = s.recvType(resource.EndpointType, 20*time.Second)
	if got := ports(cla(t, r.GetResources()[0])); !slices.Equal(got, []int{8005}) {
		t.Fatalf("after recovery: ports %v", got)
	}
}

// TestDNSServerByName gives the dns plugin its server by name (localhost,
// resolved by the system resolver from /etc/hosts) and checks that the
// records are served, and that the status names the server and the address
// it resolved to when the server stops.
func TestDNSServerByName(t *testing.T) {
	if testing.Short() {
		t.Skip("needs named")
	}
	srv := dnsserver.Start(t, dnsserver.Config{Records: []string{
		"_http._tcp.web 1 IN SRV 10 5 8001 a",
		"a 1 IN A 127.0.0.1",
	}})
	_, port, err := net.SplitHostPort(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	server := net.JoinHostPort("localhost", port)
	b := startBridge(t, map[string]string{"plugins.yaml": fmt.Sprintf(`plugins:
  - name: dns
    type: dns
    config:
      servers: [%q]
      min_refresh: 100ms
      max_refresh: 1s
      max_retry_interval: 500ms
      names:
        - {name: _http._tcp.web.%s, cluster: web}
`, server, srv.Zone())})
	s := newSotw(t, dial(t, b.grpcAddr), "envoy-dns-by-name")
	s.subscribe(resource.EndpointType, "web")
	r := s.recvType(resource.EndpointType, 20*time.Second)
	s.ack(r, "web")
	if got := ports(cla(t, r.GetResources()[0])); !slices.Equal(got, []int{8001}) {
		t.Fatalf("ports %v, want [8001]", got)
	}

	srv.Stop(t)
	want := server + " (" + srv.Addr() + ")"
	eventually(t, 20*time.Second, "the source to report the server down, by name and address", func() bool {
		st := b.sources()["dns"]
		return st.SourceState == "disconnected" && strings.Contains(st.Reason, want)
	})
}
