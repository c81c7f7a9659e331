package dnsserver

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ask returns the rcode and the answer's records, as sorted strings without
// TTLs.
func ask(t *testing.T, addr, name string, qtype uint16) (int, []string) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	r, _, err := c.Exchange(q, addr)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	var out []string
	for _, rr := range r.Answer {
		rr.Header().Ttl = 0
		out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	slices.Sort(out)
	return r.Rcode, out
}

func TestServer(t *testing.T) {
	s := Start(t, Config{
		Zone:    "zone.test",
		Records: []string{"_x._tcp SRV 1 1 80 a", "a A 10.0.0.1"},
	})
	if s.Zone() != "zone.test." {
		t.Fatalf("Zone() = %q", s.Zone())
	}
	const name = "_x._tcp.zone.test."
	check := func(wantRcode int, want ...string) {
		t.Helper()
		rcode, got := ask(t, s.Addr(), name, dns.TypeSRV)
		if rcode != wantRcode || !slices.Equal(got, want) {
			t.Fatalf("%s SRV = %s %q, want %s %q", name, dns.RcodeToString[rcode], got, dns.RcodeToString[wantRcode], want)
		}
	}
	check(dns.RcodeSuccess, name+" 0 IN SRV 1 1 80 a.zone.test.")

	s.Add(t, "_x._tcp SRV 2 1 81 a")
	check(dns.RcodeSuccess, name+" 0 IN SRV 1 1 80 a.zone.test.", name+" 0 IN SRV 2 1 81 a.zone.test.")

	s.Replace(t, "_x._tcp", dns.TypeSRV, "_x._tcp SRV 3 3 83 a")
	check(dns.RcodeSuccess, name+" 0 IN SRV 3 3 83 a.zone.test.")

	// Updates survive a restart (named's journal).
	s.Stop(t)
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeSRV)
	if _, _, err := (&dns.Client{Net: "tcp", Timeout: time.Second}).Exchange(q, s.Addr()); err == nil {
		t.Fatal("query to a stopped server succeeded")
	}
	s.Restart(t)
	check(dns.RcodeSuccess, name+" 0 IN SRV 3 3 83 a.zone.test.")

	s.Replace(t, name, dns.TypeSRV)
	check(dns.RcodeNameError)
}
