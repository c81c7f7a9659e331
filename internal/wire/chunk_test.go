package wire

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"

	sourcev1 "github.com/xdsbridge/xdsbridge/proto/source/v1"
)

func bigUpdate(clusters, endpoints int) *sourcev1.Update {
	u := &sourcev1.Update{Full: true, RemovedClusters: []string{"gone"}, Status: &sourcev1.Status{State: sourcev1.Status_CONNECTED}}
	for c := range clusters {
		pc := &sourcev1.Cluster{Name: fmt.Sprintf("c%d", c)}
		for e := range endpoints {
			pc.Endpoints = append(pc.Endpoints, &sourcev1.Endpoint{Address: fmt.Sprintf("10.0.%d.%d", e/250, e%250), Port: 80})
		}
		u.Clusters = append(u.Clusters, pc)
	}
	return u
}

// Split then Assembler gives back the update, whatever its size.
func TestSplitAssemble(t *testing.T) {
	for _, tc := range []struct{ clusters, endpoints, wantParts int }{
		{1, 1, 1},
		{100, 1000, -1}, // several
		{1, 70_000, -1}, // one cluster larger than a message
	} {
		u := bigUpdate(tc.clusters, tc.endpoints)
		parts := Split(proto.Clone(u).(*sourcev1.Update))
		if tc.wantParts > 0 && len(parts) != tc.wantParts {
			t.Fatalf("%d parts, want %d", len(parts), tc.wantParts)
		}
		if tc.wantParts < 0 && len(parts) < 2 {
			t.Fatalf("a %d-byte update was not split", proto.Size(u))
		}
		var a Assembler
		var got *sourcev1.Update
		for i, p := range parts {
			if proto.Size(p) > MaxMessageSize {
				t.Fatalf("part %d is %d bytes", i, proto.Size(p))
			}
			out, err := a.Add(p)
			if err != nil {
				t.Fatal(err)
			}
			if (out != nil) != (i == len(parts)-1) {
				t.Fatalf("part %d: complete=%v", i, out != nil)
			}
			got = out
		}
		if !proto.Equal(u, got) {
			t.Fatalf("round trip (-want +got):\n%s", cmp.Diff(u, got, protocmp.Transform()))
		}
	}
}

func TestAssemblerLimits(t *testing.T) {
	parts := Split(bigUpdate(100, 1000))
	a := Assembler{Max: ChunkSize}
	var err error
	for _, p := range parts {
		if _, err = a.Add(p); err != nil {
			break
		}
	}
	if err == nil {
		t.Fatal("an update over Max was accepted")
	}

	var b Assembler
	if _, err := b.Add(&sourcev1.Update{Full: true, More: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Add(&sourcev1.Update{Full: false}); err == nil {
		t.Fatal("a split update that changes kind midway was accepted")
	}
}
