package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

func TestVersions(t *testing.T) {
	all := []res{{cdsType, "c1", 1}, {cdsType, "c2", 1}, {edsType, "c1", 1}, {edsType, "c2", 1}}
	forward := New(nil)
	mustApply(t, forward, items(all...), nil)
	backward := New(nil)
	for i := len(all) - 1; i >= 0; i-- {
		mustApply(t, backward, items(all[i]), nil)
	}
	if diff := cmp.Diff(forward.Entries(), backward.Entries(), protocmp.Transform()); diff != "" {
		t.Errorf("entries depend on apply order (-forward +backward):\n%s", diff)
	}
	for _, typeURL := range []string{cdsType, edsType} {
		if f, b := forward.TypeVersion(typeURL), backward.TypeVersion(typeURL); f != b || len(f) != 16 {
			t.Errorf("%s type version %q vs %q, want equal, 16 characters", typeURL, f, b)
		}
	}
	if forward.TypeVersion(cdsType) == forward.TypeVersion(edsType) {
		t.Error("different types share a version")
	}

	// A resource version is the hash of its deterministic bytes.
	for _, e := range forward.Entries() {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(e.Resource)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if want := hex.EncodeToString(sum[:])[:16]; e.Version != want {
			t.Errorf("%s %s version %q, want %q", e.TypeURL, e.Name, e.Version, want)
		}
	}

	// The type version follows content, and comes back with it.
	before := forward.TypeVersion(cdsType)
	mustApply(t, forward, items(res{cdsType, "c2", 2}), nil)
	changed := forward.TypeVersion(cdsType)
	if changed == before {
		t.Error("type version did not change with a resource")
	}
	mustApply(t, forward, items(res{cdsType, "c2", 1}), nil)
	if got := forward.TypeVersion(cdsType); got != before {
		t.Errorf("type version %q after reverting, want %q", got, before)
	}
	mustApply(t, forward, nil, refs(cdsType, "c1", "c2"))
	if got := forward.TypeVersion(cdsType); got != "" {
		t.Errorf("empty type version %q, want \"\"", got)
	}
	if got := forward.TypeVersion("type.googleapis.com/never.Seen"); got != "" {
		t.Errorf("unknown type version %q, want \"\"", got)
	}
}

func TestEntriesAndLookup(t *testing.T) {
	s := New(nil)
	mustApply(t, s, []Item{
		res{edsType, "b", 1}.item("static"),
		res{cdsType, "b", 1}.item("consul", "dns"),
		res{cdsType, "a", 1}.item("dns", "consul"),
		res{edsType, "a", 1}.item("static"),
	}, nil)
	var got []string
	for _, e := range s.Entries() {
		got = append(got, e.TypeURL+" "+e.Name+" "+strings.Join(e.Sources, ","))
	}
	want := []string{
		cdsType + " a consul,dns",
		cdsType + " b consul,dns",
		edsType + " a static",
		edsType + " b static",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}

	// New sources with the same bytes: recorded, version unchanged.
	v := s.mustLookup(t, cdsType, "a").Version
	mustApply(t, s, []Item{res{cdsType, "a", 1}.item("static")}, nil)
	e := s.mustLookup(t, cdsType, "a")
	if e.Version != v || !cmp.Equal(e.Sources, []string{"static"}) {
		t.Errorf("lookup after source change: version %q sources %v, want %q [static]", e.Version, e.Sources, v)
	}
	if diff := cmp.Diff(cluster("a", 1), e.Resource, protocmp.Transform()); diff != "" {
		t.Errorf("lookup resource (-want +got):\n%s", diff)
	}
	if got := s.Entries()[0].Sources; !cmp.Equal(got, []string{"static"}) {
		t.Errorf("entries sources %v, want [static]", got)
	}
	e.Sources[0] = "mutated"
	if s.mustLookup(t, cdsType, "a").Sources[0] != "static" {
		t.Error("lookup sources alias the store")
	}
	if _, ok := s.Lookup(cdsType, "missing"); ok {
		t.Error("lookup of a missing name succeeded")
	}
	if _, ok := s.Lookup("type.googleapis.com/never.Seen", "a"); ok {
		t.Error("lookup in a missing type succeeded")
	}
}

func TestApplyErrors(t *testing.T) {
	good := res{cdsType, "good", 1}.item()
	tests := []struct {
		name    string
		item    Item
		wantErr string
	}{
		{"empty type", Item{Name: "x", Resource: cluster("x", 1)}, "empty type URL"},
		{"empty name", Item{TypeURL: cdsType, Resource: cluster("x", 1)}, "empty name"},
		{"nil resource", Item{TypeURL: cdsType, Name: "x"}, "nil resource"},
		{"wrong message type", Item{TypeURL: edsType, Name: "x", Resource: cluster("x", 1)}, "message is envoy.config.cluster.v3.Cluster"},
		{"marshal failure", Item{TypeURL: cdsType, Name: "bad", Resource: &clusterv3.Cluster{Name: "\xff"}}, "marshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(nil)
			err := s.Apply([]Item{tt.item, good}, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Apply error %v, want one containing %q", err, tt.wantErr)
			}
			if _, ok := s.Lookup(cdsType, "good"); !ok {
				t.Error("the good item was not applied")
			}
			if n := len(s.Entries()); n != 1 {
				t.Errorf("%d entries, want 1", n)
			}
		})
	}
	s := New(nil)
	if err := s.Apply(nil, []Ref{{TypeURL: cdsType}}); err == nil {
		t.Error("removing an empty name: no error")
	}
	if err := s.Apply(nil, refs(cdsType, "never-there")); err != nil {
		t.Errorf("removing a missing name: %v", err)
	}
	if len(s.types) != 0 {
		t.Errorf("%d types after removing nothing, want 0", len(s.types))
	}
}

func TestApplySetAndRemoveSameName(t *testing.T) {
	s := New(nil)
	mustApply(t, s, items(res{cdsType, "a", 1}, res{cdsType, "a", 2}), refs(cdsType, "a"))
	e := s.mustLookup(t, cdsType, "a")
	if diff := cmp.Diff(cluster("a", 2), e.Resource, protocmp.Transform()); diff != "" {
		t.Errorf("set wins over remove, last set wins (-want +got):\n%s", diff)
	}
}

func TestFetch(t *testing.T) {
	s := New(nil)
	mustApply(t, s, items(res{edsType, "a", 1}, res{edsType, "b", 1}, res{edsType, "c", 1}), nil)
	typeVersion := s.TypeVersion(edsType)
	pairVersion := func(names ...string) string {
		var es []*entry
		for _, n := range names {
			e := s.mustLookup(t, edsType, n)
			es = append(es, &entry{name: e.Name, version: e.Version})
		}
		return hashPairs(es)
	}

	tests := []struct {
		name        string
		req         *discovery.DiscoveryRequest
		wantSkip    bool
		wantVersion string
		want        []res
	}{{
		name:        "all",
		req:         &discovery.DiscoveryRequest{TypeUrl: edsType},
		wantVersion: typeVersion,
		want:        []res{{edsType, "a", 1}, {edsType, "b", 1}, {edsType, "c", 1}},
	}, {
		name:        "explicit wildcard",
		req:         &discovery.DiscoveryRequest{TypeUrl: edsType, ResourceNames: []string{"*"}},
		wantVersion: typeVersion,
		want:        []res{{edsType, "a", 1}, {edsType, "b", 1}, {edsType, "c", 1}},
	}, {
		name:     "all, up to date",
		req:      &discovery.DiscoveryRequest{TypeUrl: edsType, VersionInfo: typeVersion},
		wantSkip: true,
	}, {
		name:        "all, outdated",
		req:         &discovery.DiscoveryRequest{TypeUrl: edsType, VersionInfo: "old"},
		wantVersion: typeVersion,
		want:        []res{{edsType, "a", 1}, {edsType, "b", 1}, {edsType, "c", 1}},
	}, {
		name:        "named, missing names left out",
		req:         &discovery.DiscoveryRequest{TypeUrl: edsType, ResourceNames: []string{"c", "a", "zz"}},
		wantVersion: pairVersion("a", "c"),
		want:        []res{{edsType, "a", 1}, {edsType, "c", 1}},
	}, {
		name:     "named, up to date",
		req:      &discovery.DiscoveryRequest{TypeUrl: edsType, ResourceNames: []string{"c", "a"}, VersionInfo: pairVersion("a", "c")},
		wantSkip: true,
	}, {
		name:        "named, type version is not theirs",
		req:         &discovery.DiscoveryRequest{TypeUrl: edsType, ResourceNames: []string{"a"}, VersionInfo: typeVersion},
		wantVersion: pairVersion("a"),
		want:        []res{{edsType, "a", 1}},
	}, {
		name: "unknown type",
		req:  &discovery.DiscoveryRequest{TypeUrl: otherType},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := s.Fetch(context.Background(), tt.req)
			var skip *types.SkipFetchError
			if tt.wantSkip {
				if !errors.As(err, &skip) {
					t.Fatalf("Fetch error %v, want SkipFetchError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			out, err := r.GetDiscoveryResponse()
			if err != nil {
				t.Fatal(err)
			}
			if out.GetVersionInfo() != tt.wantVersion || r.GetResponseVersion() != tt.wantVersion {
				t.Errorf("version %q, want %q", out.GetVersionInfo(), tt.wantVersion)
			}
			if out.GetTypeUrl() != tt.req.GetTypeUrl() {
				t.Errorf("type %q, want %q", out.GetTypeUrl(), tt.req.GetTypeUrl())
			}
			if diff := cmp.Diff(msgs(tt.want...), unpack(t, out.GetResources()), protocmp.Transform(), cmpEmpty); diff != "" {
				t.Errorf("resources (-want +got):\n%s", diff)
			}
			if n := len(r.GetReturnedResources()); n != len(tt.want) {
				t.Errorf("returned %d resources, want %d", n, len(tt.want))
			}
		})
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Fetch(ctx, &discovery.DiscoveryRequest{TypeUrl: edsType}); !errors.Is(err, context.Canceled) {
		t.Errorf("Fetch with a done context: %v, want context.Canceled", err)
	}
}
