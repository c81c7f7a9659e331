package sdk

import (
	"reflect"
	"slices"
)

// Equal reports whether e and o are the same endpoint with the same
// attributes. Metadata is compared by value; nil and empty metadata are
// equal.
func (e *Endpoint) Equal(o *Endpoint) bool {
	return e.Address == o.Address && e.Port == o.Port && e.Weight == o.Weight && e.Health == o.Health &&
		e.Locality == o.Locality && e.Priority == o.Priority && e.Hostname == o.Hostname &&
		len(e.Metadata) == len(o.Metadata) && (len(e.Metadata) == 0 || reflect.DeepEqual(e.Metadata, o.Metadata))
}

// Equal reports whether c and o are the same cluster: the same name and
// overlay, and equal endpoints in the same order. Nil and empty are equal.
func (c *Cluster) Equal(o *Cluster) bool {
	if c == o {
		return true
	}
	if c.Name != o.Name || string(c.Overlay) != string(o.Overlay) || len(c.Endpoints) != len(o.Endpoints) {
		return false
	}
	for i := range c.Endpoints {
		if !c.Endpoints[i].Equal(&o.Endpoints[i]) {
			return false
		}
	}
	return true
}

// Changes turns the successive states of a source's clusters into the
// updates that carry them: a full state first, then change sets holding
// only the clusters that were added, changed or removed. It remembers what
// the host was sent, so a source that rebuilds its whole state on every
// poll (or every event) sends only the difference.
//
// Update (or Change) computes an update without recording it; Sent records
// it once the host has it, so an update that was never delivered is
// computed again. The zero value is ready to use; a Changes is not safe for
// concurrent use. It keeps the clusters it records: do not modify them
// afterwards.
type Changes struct {
	sent map[string]Cluster // by name, as the host has them
	full bool               // a full state was sent
}

// Update returns the update that takes the host from what it was sent to
// state, every cluster the source has now: before the first full state is
// sent (or after Reset), a full state of state; after it, state's clusters
// that are new or differ from what was sent, in state's order, and the
// names of sent clusters that state lacks, sorted. ok is false when there
// is nothing to send.
func (ch *Changes) Update(state []Cluster) (u Update, ok bool) {
	if !ch.full {
		return Update{Full: true, Clusters: state}, true
	}
	names := make(map[string]bool, len(state))
	for i := range state {
		names[state[i].Name] = true
		ch.Change(&u, state[i].Name, &state[i])
	}
	for name := range ch.sent {
		if !names[name] {
			u.RemovedClusters = append(u.RemovedClusters, name)
		}
	}
	slices.Sort(u.RemovedClusters)
	return u, len(u.Clusters) > 0 || len(u.RemovedClusters) > 0
}

// Change adds to u what takes the host's copy of the cluster called name to
// c, nil meaning the source no longer has it: c when it is new or differs
// from what was sent, name in RemovedClusters when the host has the cluster
// and c is nil, nothing otherwise. Sources that know which clusters may
// have changed call it for those alone, once a full state was sent.
func (ch *Changes) Change(u *Update, name string, c *Cluster) {
	old, had := ch.sent[name]
	switch {
	case c != nil && (!had || !old.Equal(c)):
		u.Clusters = append(u.Clusters, *c)
	case c == nil && had:
		u.RemovedClusters = append(u.RemovedClusters, name)
	}
}

// Sent records that the host has u: a full state replaces what it had, a
// change set upserts and removes.
func (ch *Changes) Sent(u Update) {
	if u.Full {
		ch.full = true
		clear(ch.sent)
	} else if len(u.Clusters) == 0 && len(u.RemovedClusters) == 0 {
		return
	}
	if ch.sent == nil {
		ch.sent = make(map[string]Cluster, len(u.Clusters))
	}
	for _, c := range u.Clusters {
		ch.sent[c.Name] = c
	}
	if !u.Full {
		for _, name := range u.RemovedClusters {
			delete(ch.sent, name)
		}
	}
}

// Reset forgets what was sent: the next Update is a full state.
func (ch *Changes) Reset() {
	ch.full = false
	clear(ch.sent)
}
