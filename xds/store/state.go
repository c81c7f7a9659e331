package store

import (
	"slices"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// typeState is everything the store holds for one type URL. Guarded by
// Store.mu.
type typeState struct {
	url string
	// fullState types (Cluster, Listener) carry every subscribed resource in
	// each SotW response.
	fullState bool
	entries   map[string]*entry
	// view is the current generation of entries, sorted and immutable.
	view *typeView

	// byName indexes non-wildcard watches by subscribed name, wildcard the
	// wildcard ones. A watch that has fired stays indexed, and is skipped,
	// until go-control-plane cancels it: that happens on the client's next
	// request, in the stream's goroutine, so the cost of unindexing it is
	// kept off the notification path.
	byName   map[string]*nameIndex
	wildcard *nameIndex
	// watches counts registered watches not cancelled yet.
	watches int
	// sets are the Subs' subscriptions, by key.
	sets map[string]*subSet
}

func newTypeState(typeURL string) *typeState {
	return &typeState{
		url:       typeURL,
		fullState: cachev3.ResourceRequiresFullStateInSotw(typeURL),
		entries:   make(map[string]*entry),
		view:      &typeView{typeURL: typeURL},
		byName:    make(map[string]*nameIndex),
		wildcard:  &nameIndex{},
		sets:      make(map[string]*subSet),
	}
}

// nameIndex holds the watches subscribed to one name (or to all). Watches
// are added and removed in constant time without hashing: each watch keeps
// its position in every index it is in.
type nameIndex struct {
	name    string
	entries []indexEntry
}

type indexEntry struct {
	w *watch
	// slot is the index of this entry's slot in w.slots.
	slot int
}

// slot is a watch's place in one nameIndex.
type slot struct {
	idx *nameIndex
	pos int
}

// index adds w to the index of each name it subscribes to, or to the
// wildcard index.
func (ts *typeState) index(w *watch) {
	w.ts = ts
	ts.watches++
	if w.wildcard {
		w.slots = []slot{ts.wildcard.add(w, 0)}
		return
	}
	w.slots = make([]slot, 0, len(w.subscribed))
	for name := range w.subscribed {
		idx := ts.byName[name]
		if idx == nil {
			idx = &nameIndex{name: name}
			ts.byName[name] = idx
		}
		w.slots = append(w.slots, idx.add(w, len(w.slots)))
	}
}

func (idx *nameIndex) add(w *watch, slotNo int) slot {
	idx.entries = append(idx.entries, indexEntry{w: w, slot: slotNo})
	return slot{idx: idx, pos: len(idx.entries) - 1}
}

// unindex removes w from every index it is in.
func (ts *typeState) unindex(w *watch) {
	for _, sl := range w.slots {
		idx := sl.idx
		last := len(idx.entries) - 1
		moved := idx.entries[last]
		idx.entries[sl.pos] = moved
		moved.w.slots[moved.slot].pos = sl.pos
		idx.entries[last] = indexEntry{}
		idx.entries = idx.entries[:last]
		if last == 0 && idx != ts.wildcard {
			delete(ts.byName, idx.name)
		}
	}
	w.slots = nil
	ts.watches--
}

// apply records the changes of one type (nil means remove) and returns the
// names that changed, sorted, and the entries removed.
func (ts *typeState) apply(changes map[string]*entry) (names []string, gone map[string]*entry) {
	for name, e := range changes {
		old := ts.entries[name]
		switch {
		case e == nil:
			if old == nil {
				continue
			}
			delete(ts.entries, name)
			if gone == nil {
				gone = make(map[string]*entry)
			}
			gone[name] = old
		case old != nil && old.version == e.version:
			if !slices.Equal(old.sources, e.sources) {
				// Same bytes, new provenance: keep serving the old entry.
				cp := *old
				cp.sources = e.sources
				ts.entries[name] = &cp
			}
			continue
		default:
			ts.entries[name] = e
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return nil, nil
	}
	slices.Sort(names)
	ts.view = ts.view.merge(names, ts.entries)
	return names, gone
}
