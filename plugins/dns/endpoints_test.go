package dns

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/xdsbridge/xdsbridge/sdk"
)

func TestBuildSRV(t *testing.T) {
	// Every target resolves as named here, except "gone." (NXDOMAIN).
	resolved := map[string]addrs{
		"a.":     {ips: ips("10.0.0.1"), ttl: 30},
		"b.":     {ips: ips("10.0.0.2"), ttl: 30},
		"c.":     {ips: ips("10.0.0.3"), ttl: 30},
		"dual.":  {ips: ips("10.0.0.4", "2001:db8::4"), ttl: 7},
		"alias.": {ips: ips("10.0.0.1"), ttl: 30}, // same address as a.
		"gone.":  {absent: "NXDOMAIN", ttl: 5},
	}
	tests := []struct {
		name     string
		records  []string // "priority weight port target"
		want     []string
		rejected []string // substrings, one per rejection
		ttl      uint32
	}{
		{
			name:    "priorities are renumbered densely",
			records: []string{"30 1 80 c.", "10 1 80 a.", "20 1 80 b."},
			want:    []string{"10.0.0.1:80 p0 w1", "10.0.0.2:80 p1 w1", "10.0.0.3:80 p2 w1"},
			ttl:     30,
		},
		{
			name:    "same priority shares level",
			records: []string{"5 3 80 a.", "5 1 80 b.", "7 2 80 c."},
			want:    []string{"10.0.0.1:80 p0 w3", "10.0.0.2:80 p0 w1", "10.0.0.3:80 p1 w2"},
			ttl:     30,
		},
		{
			name:    "all weights zero share equally",
			records: []string{"1 0 80 a.", "1 0 80 b."},
			want:    []string{"10.0.0.1:80 p0 w1", "10.0.0.2:80 p0 w1"},
			ttl:     30,
		},
		{
			name:    "weight zero beside positive weights gets a very small share",
			records: []string{"1 0 80 a.", "1 3 80 b.", "2 0 80 c."},
			want:    []string{"10.0.0.1:80 p0 w1", "10.0.0.2:80 p0 w300", "10.0.0.3:80 p1 w1"},
			ttl:     30,
		},
		{
			name:    "both address families of a target",
			records: []string{"1 4 8080 dual."},
			want:    []string{"10.0.0.4:8080 p0 w4", "[2001:db8::4]:8080 p0 w4"},
			ttl:     7,
		},
		{
			name:     "port zero rejected, rest served",
			records:  []string{"1 1 0 a.", "1 1 80 b."},
			want:     []string{"10.0.0.2:80 p0 w1"},
			rejected: []string{"SRV 1 1 0 a.: port 0"},
			ttl:      30,
		},
		{
			name:     "duplicate target and port rejected",
			records:  []string{"1 1 80 a.", "2 5 80 a.", "1 1 81 a."},
			want:     []string{"10.0.0.1:80 p0 w1", "10.0.0.1:81 p0 w1"},
			rejected: []string{"SRV 2 5 80 a.: duplicate target a. port 80"},
			ttl:      30,
		},
		{
			name:     "two targets with one address",
			records:  []string{"1 1 80 a.", "1 1 80 alias."},
			want:     []string{"10.0.0.1:80 p0 w1"},
			rejected: []string{"SRV 1 1 80 alias.: address 10.0.0.1:80 duplicates target a."},
			ttl:      30,
		},
		{
			name:     "unresolvable target rejected, its priority not counted",
			records:  []string{"1 1 80 gone.", "2 1 80 b."},
			want:     []string{"10.0.0.2:80 p0 w1"},
			rejected: []string{"SRV 1 1 80 gone.: target gone. does not resolve (NXDOMAIN)"},
			ttl:      5,
		},
		{
			name:    "dot target means no service",
			records: []string{"0 0 0 ."},
			want:    nil,
			ttl:     60,
		},
		{
			name:    "target case does not matter",
			records: []string{"1 1 80 A."},
			want:    []string{"10.0.0.1:80 p0 w1"},
			ttl:     30,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var srvs []*mdns.SRV
			for _, r := range tt.records {
				rr, err := mdns.NewRR("_x._tcp.example. 60 IN SRV " + r)
				if err != nil {
					t.Fatal(err)
				}
				srvs = append(srvs, rr.(*mdns.SRV))
			}
			// Order must not matter: try the records reversed too.
			for _, order := range [][]*mdns.SRV{srvs, reversed(srvs)} {
				a := buildSRV(order, resolved)
				v := view{clusters: map[string][]sdk.Endpoint{"c": a.endpoints}}
				if got := v.eps("c"); !slices.Equal(got, tt.want) {
					t.Errorf("endpoints = %q, want %q", got, tt.want)
				}
				if len(a.rejected) != len(tt.rejected) {
					t.Fatalf("rejected = %q, want %d like %q", a.rejected, len(tt.rejected), tt.rejected)
				}
				for i, r := range tt.rejected {
					if !strings.Contains(a.rejected[i], r) {
						t.Errorf("rejected[%d] = %q, want it to contain %q", i, a.rejected[i], r)
					}
				}
				if a.ttl != tt.ttl {
					t.Errorf("ttl = %d, want %d", a.ttl, tt.ttl)
				}
			}
		})
	}
}

func TestLevelWeightsNoOverflow(t *testing.T) {
	var items []srvItem
	for i := range 1000 {
		w := uint16(65535)
		if i == 0 {
			w = 0
		}
		items = append(items, srvItem{srv: &mdns.SRV{Weight: w}, ips: ips("10.0.0.1")})
	}
	var sum uint64
	ws := levelWeights(items)
	for _, w := range ws {
		sum += uint64(w)
	}
	if sum > math.MaxUint32 {
		t.Fatalf("weights sum to %d, more than 2^32-1", sum)
	}
	if ws[0] != 1 || ws[1] <= ws[0] {
		t.Fatalf("weights %d, %d: weight 0 must stay smallest", ws[0], ws[1])
	}
}

func ips(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func reversed[T any](s []T) []T {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

func BenchmarkBuildSRV(b *testing.B) {
	resolved := map[string]addrs{}
	var srvs []*mdns.SRV
	for i := range 1000 {
		target := fmt.Sprintf("t%d.example.", i)
		resolved[target] = addrs{ips: ips(fmt.Sprintf("10.0.%d.%d", i/256, i%256)), ttl: 30}
		srvs = append(srvs, &mdns.SRV{
			Hdr:      mdns.RR_Header{Name: "_x._tcp.example.", Rrtype: mdns.TypeSRV, Class: mdns.ClassINET, Ttl: 30},
			Priority: uint16(i % 3), Weight: uint16(i % 7), Port: 8080, Target: target,
		})
	}
	b.ReportAllocs()
	for b.Loop() {
		if a := buildSRV(srvs, resolved); len(a.endpoints) != 1000 {
			b.Fatalf("%d endpoints", len(a.endpoints))
		}
	}
}
