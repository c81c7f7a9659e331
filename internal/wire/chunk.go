package wire

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	sourcev1 "github.com/xdsbridge/xdsbridge/proto/source/v1"
)

// Split cuts a large wire update into messages of about ChunkSize bytes, all
// but the last with More set. A cluster larger than one message is cut by
// its endpoints, the message holding the rest marked ContinuesCluster. The
// host reassembles the messages before applying anything, so a split full
// state still replaces the old state in one step.
func Split(u *sourcev1.Update) []*sourcev1.Update {
	if proto.Size(u) <= ChunkSize {
		return []*sourcev1.Update{u}
	}
	var (
		out  []*sourcev1.Update
		cur  = &sourcev1.Update{Full: u.Full}
		size int
	)
	flush := func() {
		cur.More = true
		out = append(out, cur)
		cur = &sourcev1.Update{Full: u.Full}
		size = 0
	}
	for _, c := range u.Clusters {
		n := proto.Size(c)
		if n <= ChunkSize {
			if size > 0 && size+n > ChunkSize {
				flush()
			}
			cur.Clusters = append(cur.Clusters, c)
			size += n
			continue
		}
		if size > 0 {
			flush()
		}
		piece := &sourcev1.Cluster{Name: c.Name, Overlay: c.Overlay}
		size = proto.Size(piece)
		for _, e := range c.Endpoints {
			en := proto.Size(e) + 6 // tag and length
			if len(piece.Endpoints) > 0 && size+en > ChunkSize {
				cur.Clusters = append(cur.Clusters, piece)
				flush()
				cur.ContinuesCluster = true
				piece = &sourcev1.Cluster{Name: c.Name}
				size = proto.Size(piece)
			}
			piece.Endpoints = append(piece.Endpoints, e)
			size += en
		}
		cur.Clusters = append(cur.Clusters, piece)
	}
	for _, r := range u.Resources {
		n := proto.Size(r)
		if size > 0 && size+n > ChunkSize {
			flush()
		}
		cur.Resources = append(cur.Resources, r)
		size += n
	}
	cur.RemovedClusters = u.RemovedClusters
	cur.RemovedResources = u.RemovedResources
	cur.Status = u.Status
	out = append(out, cur)
	return out
}

// Assembler joins split updates back together.
type Assembler struct {
	pending *sourcev1.Update
	size    int
	// Max bounds the bytes of one reassembled update; 0 means no bound.
	Max int
}

// Add takes the next message of the stream. It returns the complete update
// when msg ends one.
func (a *Assembler) Add(msg *sourcev1.Update) (*sourcev1.Update, error) {
	if a.pending == nil {
		if msg.GetContinuesCluster() {
			return nil, fmt.Errorf("a message continues a cluster, but no split update is in progress")
		}
		if !msg.GetMore() {
			return msg, nil
		}
		a.pending, a.size = msg, proto.Size(msg)
		return nil, nil
	}
	if msg.GetFull() != a.pending.GetFull() {
		a.pending = nil
		return nil, fmt.Errorf("split update changes kind midway (full=%v, then %v)", !msg.GetFull(), msg.GetFull())
	}
	a.size += proto.Size(msg)
	if a.Max > 0 && a.size > a.Max {
		a.pending = nil
		return nil, fmt.Errorf("update exceeds %d bytes", a.Max)
	}
	p := a.pending
	clusters := msg.Clusters
	if msg.GetContinuesCluster() {
		if len(p.Clusters) == 0 || len(clusters) == 0 || p.Clusters[len(p.Clusters)-1].GetName() != clusters[0].GetName() {
			a.pending = nil
			return nil, fmt.Errorf("a message continues a cluster it does not follow")
		}
		last := p.Clusters[len(p.Clusters)-1]
		last.Endpoints = append(last.Endpoints, clusters[0].Endpoints...)
		clusters = clusters[1:]
	}
	p.Clusters = append(p.Clusters, clusters...)
	p.Resources = append(p.Resources, msg.Resources...)
	p.RemovedClusters = append(p.RemovedClusters, msg.RemovedClusters...)
	p.RemovedResources = append(p.RemovedResources, msg.RemovedResources...)
	if msg.Status != nil {
		p.Status = msg.Status
	}
	if msg.GetMore() {
		return nil, nil
	}
	p.More = false
	a.pending = nil
	return p, nil
}
