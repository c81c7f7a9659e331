package wire

import (
	"encoding/binary"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	sourcev1 "github.com/xdsbridge/xdsbridge/proto/source/v1"
)

// fuzzMessages cuts data into the messages of a stream: each is a 2-byte
// big-endian length and that many bytes (fewer at the end).
func fuzzMessages(data []byte) [][]byte {
	var out [][]byte
	for len(data) >= 2 && len(out) < 64 {
		n := int(binary.BigEndian.Uint16(data))
		data = data[2:]
		n = min(n, len(data))
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}

// FuzzAssembler feeds the host's side of a watch stream arbitrary bytes:
// each message is decoded as an Update the way gRPC does (so most are
// invalid protobuf, which must fail cleanly) and the valid ones go through
// the Assembler. It checks that nothing panics; that a completed update is
// exactly the concatenation of its parts and never marked more; that a
// split update never grows past Max; that after an error the assembler
// starts afresh; and that Split and Assembler round-trip every update.
func FuzzAssembler(f *testing.F) {
	for _, seed := range assemblerSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		max := int(data[0]) * 64 // 0 (no bound) to 16 KiB
		a := Assembler{Max: max}
		var (
			want      []*sourcev1.Cluster // clusters of the pending parts
			wantSize  int
			parts     int
			completed int
		)
		for _, raw := range fuzzMessages(data[1:]) {
			var msg sourcev1.Update
			if err := proto.Unmarshal(raw, &msg); err != nil {
				continue // what gRPC reports as a failed Recv
			}
			pending := parts > 0
			parts++
			clusters := msg.GetClusters()
			if msg.GetContinuesCluster() && pending && len(want) > 0 && len(clusters) > 0 && want[len(want)-1].GetName() == clusters[0].GetName() {
				// The first cluster carries more endpoints of the last one.
				last := proto.Clone(want[len(want)-1]).(*sourcev1.Cluster)
				last.Endpoints = append(last.Endpoints, clusters[0].GetEndpoints()...)
				want[len(want)-1] = last
				clusters = clusters[1:]
			}
			want = append(want, clusters...)
			wantSize += proto.Size(&msg)
			first := msg.GetFull()
			out, err := a.Add(&msg)
			switch {
			case err != nil:
				if !pending && !msg.GetContinuesCluster() {
					t.Fatalf("the first part of an update failed: %v", err)
				}
				if !pending {
					want, wantSize, parts = nil, 0, 0
					continue
				}
				want, wantSize, parts = nil, 0, 0
				// Afresh: a whole message goes straight through.
				whole := &sourcev1.Update{Full: first}
				if got, err := a.Add(whole); err != nil || got != whole {
					t.Fatalf("after an error the assembler is not reset: %v, %v", got, err)
				}
			case out != nil:
				completed++
				if out.GetMore() {
					t.Fatal("a completed update is marked more")
				}
				if len(out.GetClusters()) != len(want) {
					t.Fatalf("completed update has %d clusters, its parts had %d", len(out.GetClusters()), len(want))
				}
				for i := range want {
					if !proto.Equal(out.GetClusters()[i], want[i]) {
						t.Fatalf("cluster %d differs from its part", i)
					}
				}
				if max > 0 && parts > 1 && wantSize > max {
					t.Fatalf("a split update of %d bytes passed Max %d", wantSize, max)
				}
				want, wantSize, parts = nil, 0, 0
			default:
				if !msg.GetMore() {
					t.Fatalf("a message without more did not complete the update (pending before: %v)", pending)
				}
			}
		}
		_ = completed

		// Round trip: every valid message, as a whole update, survives
		// Split and reassembly; a large one is made by repetition so that
		// it really is split.
		for i, raw := range fuzzMessages(data[1:]) {
			var u sourcev1.Update
			if proto.Unmarshal(raw, &u) != nil {
				continue
			}
			u.More, u.ContinuesCluster = false, false
			if i == 0 && len(u.GetClusters()) > 0 && proto.Size(&u) >= 512 && data[0]%8 == 0 {
				for proto.Size(&u) <= ChunkSize {
					u.Clusters = append(u.Clusters, u.Clusters...)
				}
			}
			orig := proto.Clone(&u).(*sourcev1.Update)
			split := Split(&u)
			var b Assembler
			var got *sourcev1.Update
			for j, p := range split {
				out, err := b.Add(p)
				if err != nil {
					t.Fatalf("reassembling part %d of %d: %v", j, len(split), err)
				}
				if (out != nil) != (j == len(split)-1) {
					t.Fatalf("part %d of %d: complete=%v", j, len(split), out != nil)
				}
				got = out
			}
			if !proto.Equal(orig, got) {
				t.Fatalf("round trip changed a %d-byte update split in %d", proto.Size(orig), len(split))
			}
		}
	})
}

// assemblerSeeds: real split streams, a kind change midway, and bytes that
// are not protobuf.
func assemblerSeeds() [][]byte {
	frame := func(max byte, msgs ...[]byte) []byte {
		out := []byte{max}
		for _, m := range msgs {
			out = binary.BigEndian.AppendUint16(out, uint16(len(m)))
			out = append(out, m...)
		}
		return out
	}
	enc := func(u *sourcev1.Update) []byte {
		b, err := proto.Marshal(u)
		if err != nil {
			panic(err)
		}
		return b
	}
	cl := func(name string, n int) *sourcev1.Cluster {
		c := &sourcev1.Cluster{Name: name}
		for i := range n {
			c.Endpoints = append(c.Endpoints, &sourcev1.Endpoint{Address: fmt.Sprintf("10.0.0.%d", i+1), Port: 80})
		}
		return c
	}
	return [][]byte{
		frame(0, enc(&sourcev1.Update{Full: true, Clusters: []*sourcev1.Cluster{cl("a", 2)}})),
		frame(4,
			enc(&sourcev1.Update{Full: true, More: true, Clusters: []*sourcev1.Cluster{cl("a", 3)}}),
			enc(&sourcev1.Update{Full: true, More: true, Clusters: []*sourcev1.Cluster{cl("b", 3)}}),
			enc(&sourcev1.Update{Full: true, RemovedClusters: []string{"c"}, Status: &sourcev1.Status{State: sourcev1.Status_CONNECTED}})),
		frame(8,
			enc(&sourcev1.Update{Full: true, More: true, Clusters: []*sourcev1.Cluster{cl("a", 1)}}),
			enc(&sourcev1.Update{Full: false, Clusters: []*sourcev1.Cluster{cl("b", 1)}}),
			enc(&sourcev1.Update{Full: false, Clusters: []*sourcev1.Cluster{cl("c", 1)}})),
		frame(1,
			enc(&sourcev1.Update{More: true, Clusters: []*sourcev1.Cluster{cl("big", 20)}}),
			enc(&sourcev1.Update{More: true, Clusters: []*sourcev1.Cluster{cl("big2", 20)}}),
			enc(&sourcev1.Update{})),
		frame(0, []byte{0xff, 0xff, 0xff, 0xff}, []byte{0x1a, 0x04, 0x0a, 0x02, 0xff, 0xfe}, []byte{0x08}),
		frame(16, enc(&sourcev1.Update{Resources: []*sourcev1.Resource{{}}, RemovedResources: []*sourcev1.ResourceRef{{TypeUrl: "t", Name: "n"}}})),
	}
}
