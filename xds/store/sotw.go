package store

import (
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// Sub is one state-of-the-world stream's subscription to one type, kept for
// the life of the stream. Unlike a watch, it is not re-created for every
// request: a request that does not change the subscription (an ACK or NACK
// repeating the names) only arms it again, which costs the same whatever
// the number of names.
//
// A Sub keeps no copy of what the client holds. It remembers the names that
// changed since its last response (pending), and for a full-state type the
// content hash of that response: a response carries the current version of
// every pending name (a partial type) or every subscribed resource (a
// full-state type, and only when that content differs from the last one).
// So a NACKed response is not sent again: nothing is pending until one of
// its resources changes, and a partial type skips a resource whose current
// version is one the client rejected, or still holds because state of the
// world could not tell it the resource was removed.
//
// A Sub answers one request with at most one response: after Take returns
// a response, it returns nothing until Arm is called for the client's next
// request. The stream calls Take from one goroutine; wake, which the store
// calls when an armed Sub has something to take, must not block.
type Sub struct {
	s    *Store
	ts   *typeState
	full bool
	wake func()
	// set is the Sub's subscription, pos its place in set.subs; guarded by
	// Store.mu.
	set *subSet
	pos int

	mu sync.Mutex
	// initial: the client has nothing yet; the next response carries
	// everything subscribed.
	initial bool
	armed   bool
	closed  bool
	pending []string
	// batch is the one Apply all of pending comes from, batchN how many of
	// its resources concern the Sub; a Sub concerned by all of a batch and
	// nothing else is sent the batch's shared response.
	batch  *sotwBatch
	batchN int
	mixed  bool
	// sentHash is the content hash of the last full-state response.
	sentHash string
	// last are the resources of the last response (partial types). held
	// maps names to a version not to send again: one the client NACKed, or
	// the version it still holds of a removed resource.
	last []*entry
	held map[string]string
}

// maxKeptPending bounds the room a Sub keeps for pending names.
const maxKeptPending = 64

// sotwBatch is one Apply's changed resources of one type, sorted by name,
// and their SotW response body, built once for every Sub that needs it.
type sotwBatch struct {
	version string
	entries []*entry
	body    sharedBody
}

// sharedBody is an encoded response body built once.
type sharedBody struct {
	once sync.Once
	anys []*anypb.Any
	b    []byte
}

// get returns the body, building it from version and entries the first
// time: every call must pass the same.
func (sb *sharedBody) get(version string, entries []*entry) ([]*anypb.Any, []byte) {
	sb.once.Do(func() {
		sb.anys = anysOf(entries)
		sb.b = encodeSotwBody(version, sb.anys)
	})
	return sb.anys, sb.b
}

// SotwResponse is a response a Sub has to send. Its parts may be shared
// with other streams: do not modify them.
type SotwResponse struct {
	TypeURL   string
	Version   string
	Resources []*anypb.Any
	// Body is the response's version_info and resources fields, encoded
	// as a DiscoveryResponse; the stream appends type_url and nonce.
	Body []byte
}

// subSet is a subscription that Subs share: one type, wildcard or the same
// names. It is indexed once, however many Subs it has, so a client costs
// no more than its place in subs; the common case of every client
// subscribing to every cluster costs one set. Guarded by Store.mu.
type subSet struct {
	key  string
	w    *watch // its place in the name indexes
	subs []*Sub
	// sel is the selection of the last generation a member took from.
	sel atomic.Pointer[selection]
}

// setKey identifies a subscription: "*" for a wildcard one, else its
// distinct names sorted, each preceded by its length.
func setKey(wildcard bool, names []string) string {
	if wildcard {
		return "*"
	}
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	n := 0
	for _, name := range sorted {
		n += binary.MaxVarintLen64 + len(name)
	}
	b := make([]byte, 0, n)
	for _, name := range sorted {
		b = binary.AppendUvarint(b, uint64(len(name)))
		b = append(b, name...)
	}
	return string(b)
}

// join makes sub a member of the set of its subscription, creating and
// indexing the set if it is the first. Called with the write lock held.
func (sub *Sub) join(wildcard bool, names []string) {
	ts := sub.ts
	key := setKey(wildcard, names)
	set := ts.sets[key]
	if set == nil {
		set = &subSet{key: key, w: &watch{wildcard: wildcard, subscribed: nameSet(names)}}
		set.w.set = set
		ts.sets[key] = set
		ts.index(set.w)
	}
	sub.set, sub.pos = set, len(set.subs)
	set.subs = append(set.subs, sub)
}

// leave takes sub out of its set, and the set out of the indexes if it was
// the last member. Called with the write lock held.
func (sub *Sub) leave() {
	set, ts := sub.set, sub.ts
	last := len(set.subs) - 1
	moved := set.subs[last]
	set.subs[sub.pos], moved.pos = moved, sub.pos
	set.subs[last] = nil
	set.subs = set.subs[:last]
	sub.set = nil
	if last == 0 {
		ts.unindex(set.w)
		set.w.state = cancelled
		delete(ts.sets, set.key)
	}
}

// Subscribe registers a SotW subscription to typeURL: every resource of the
// type when wildcard, else the resources named by names. It is armed: wake
// is called as soon as it has a response to take (at once, if the type has
// something to send).
func (s *Store) Subscribe(typeURL string, wildcard bool, names []string, wake func()) *Sub {
	sub := &Sub{s: s, full: cachev3.ResourceRequiresFullStateInSotw(typeURL), wake: wake, initial: true, armed: true}
	s.mu.Lock()
	ts := s.types[typeURL]
	if ts == nil {
		ts = newTypeState(typeURL)
		s.types[typeURL] = ts
	}
	sub.ts = ts
	sub.join(wildcard, names)
	s.mu.Unlock()
	sub.wake()
	return sub
}

func nameSet(names []string) map[string]struct{} {
	m := make(map[string]struct{}, len(names))
	for _, n := range names {
		m[n] = struct{}{}
	}
	return m
}

// Update changes what the Sub subscribes to. The names it did not
// subscribe to before are pending (sent if they exist); the others are as
// they were.
func (sub *Sub) Update(wildcard bool, names []string) {
	s := sub.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub.set == nil {
		return // closed
	}
	old := sub.set.w
	var added []string
	switch {
	case wildcard && !old.wildcard:
		// Everything is new unless the client had it; a full-state
		// response is only sent if its content differs.
		for _, e := range sub.ts.view.entries {
			added = append(added, e.name)
		}
	case !wildcard:
		for _, n := range names {
			if _, ok := old.subscribed[n]; !ok || old.wildcard {
				added = append(added, n)
			}
		}
	}
	sub.leave()
	sub.join(wildcard, names)
	if len(added) == 0 {
		return
	}
	sub.mu.Lock()
	sub.pending = append(sub.pending, added...)
	sub.mixed = true
	ready := sub.readyLocked()
	sub.mu.Unlock()
	if ready {
		sub.wake()
	}
}

// Arm readies the Sub for its next response, when the client has answered
// the last one: nack says it rejected it.
func (sub *Sub) Arm(nack bool) {
	sub.mu.Lock()
	if nack && !sub.full {
		for _, e := range sub.last {
			sub.holdLocked(e.name, e.version)
		}
	}
	sub.armed = true
	ready := sub.readyLocked()
	sub.mu.Unlock()
	if ready {
		sub.wake()
	}
}

func (sub *Sub) holdLocked(name, version string) {
	if sub.held == nil {
		sub.held = make(map[string]string)
	}
	sub.held[name] = version
}

func (sub *Sub) readyLocked() bool {
	return sub.armed && !sub.closed && (sub.initial || len(sub.pending) > 0)
}

// Close unregisters the Sub. It is safe to call more than once.
func (sub *Sub) Close() {
	s := sub.s
	s.mu.Lock()
	defer s.mu.Unlock()
	sub.mu.Lock()
	sub.closed = true
	sub.mu.Unlock()
	if sub.set == nil {
		return
	}
	sub.leave()
	ts := sub.ts
	if ts.watches == 0 && len(ts.entries) == 0 && s.types[ts.url] == ts {
		delete(s.types, ts.url)
	}
}

// mark records that name changed, as part of batch b: cur is its entry, or
// nil when it is gone, old then being the entry removed. Called with the
// store's write lock held.
func (sub *Sub) mark(name string, cur, old *entry, b *sotwBatch) {
	sub.mu.Lock()
	if cur == nil && !sub.full {
		// A partial SotW type cannot say a resource is gone: the client
		// keeps the version it has, which is old unless one is pending.
		if old != nil && !sub.initial && !slices.Contains(sub.pending, name) {
			sub.holdLocked(name, old.version)
		}
		sub.mu.Unlock()
		return
	}
	switch {
	case sub.full || sub.mixed:
	case sub.batch == nil && len(sub.pending) == 0 && !sub.initial:
		sub.batch, sub.batchN = b, 1
	case sub.batch == b:
		sub.batchN++
	default:
		sub.mixed = true
	}
	sub.pending = append(sub.pending, name)
	ready := sub.readyLocked()
	sub.mu.Unlock()
	if ready {
		sub.wake()
	}
}

// Take returns the response the Sub has to send, or nil when it has none
// or is waiting for the client to answer its last one.
func (sub *Sub) Take() *SotwResponse {
	sub.mu.Lock()
	ready := sub.readyLocked()
	sub.mu.Unlock()
	if !ready {
		return nil
	}
	s := sub.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if !sub.readyLocked() {
		return nil
	}
	ts, set := sub.ts, sub.set
	w, view := set.w, ts.view
	initial, pending, batch, shared := sub.initial, sub.pending, sub.batch, sub.batch != nil && !sub.mixed && sub.batchN == len(sub.batch.entries)
	sub.initial, sub.pending, sub.batch, sub.batchN, sub.mixed = false, sub.pending[:0], nil, 0, false
	if cap(pending) > maxKeptPending {
		// A burst of names: do not keep its room for the Sub's life.
		sub.pending = nil
	}

	// entries are what to send; body, when set, their response shared
	// with other Subs, under version.
	var (
		entries []*entry
		body    *sharedBody
		version = view.Version()
	)
	if sub.full {
		hash := version
		if w.wildcard {
			entries, body = view.entries, &view.all
		} else {
			sel := set.selection(view, true)
			entries, body, hash = sel.entries, &sel.body, sel.hash
		}
		if !initial && hash == sub.sentHash {
			return nil
		}
		sub.sentHash = hash
	} else {
		switch {
		case initial && w.wildcard:
			entries, body = view.entries, &view.all
		case initial:
			sel := set.selection(view, false)
			entries, body = sel.entries, &sel.body
		case shared:
			entries, body, version = batch.entries, &batch.body, batch.version
		default:
			slices.Sort(pending)
			for _, n := range slices.Compact(pending) {
				if _, ok := w.subscribed[n]; !ok && !w.wildcard {
					continue
				}
				if e := ts.entries[n]; e != nil {
					entries = append(entries, e)
				}
			}
		}
		if len(sub.held) > 0 {
			if kept := sub.skipHeld(entries); len(kept) != len(entries) {
				entries, body, version = kept, nil, view.Version()
			}
		}
		if len(entries) == 0 {
			return nil
		}
		sub.last = entries
	}
	if len(entries) == len(view.entries) && version == view.Version() {
		// Every resource of the generation: the body every such
		// response shares.
		body = &view.all
	}
	r := &SotwResponse{TypeURL: ts.url, Version: version}
	if body != nil {
		r.Resources, r.Body = body.get(version, entries)
	} else {
		r.Resources = anysOf(entries)
		r.Body = encodeSotwBody(version, r.Resources)
	}
	sub.armed = false
	return r
}

// selection is what a named subscription set selects of one generation,
// and its response, built once for all the set's members.
type selection struct {
	view    *typeView
	entries []*entry
	// hash is the content hash of entries (full-state types only).
	hash string
	body sharedBody
}

// selection returns the set's selection of view. Called with the read lock
// held, by any number of Subs at once: one of them builds it.
func (set *subSet) selection(view *typeView, full bool) *selection {
	if sel := set.sel.Load(); sel != nil && sel.view == view {
		return sel
	}
	sel := &selection{view: view, entries: view.selectNames(set.w.subscribed)}
	if full {
		sel.hash = hashPairs(sel.entries)
	}
	if set.sel.CompareAndSwap(set.sel.Load(), sel) {
		return sel
	}
	if cur := set.sel.Load(); cur != nil && cur.view == view {
		return cur
	}
	return sel
}

// skipHeld drops the entries whose version is held, and forgets what is
// held of those that have moved on.
func (sub *Sub) skipHeld(entries []*entry) []*entry {
	out := make([]*entry, 0, len(entries))
	for _, e := range entries {
		v, ok := sub.held[e.name]
		if ok && v == e.version {
			continue
		}
		delete(sub.held, e.name)
		out = append(out, e)
	}
	return out
}

// encodeSotwBody encodes the version_info and resources fields of a
// DiscoveryResponse, as proto.Marshal would.
func encodeSotwBody(version string, anys []*anypb.Any) []byte {
	n := 0
	if version != "" {
		n += 1 + protowire.SizeBytes(len(version))
	}
	for _, a := range anys {
		n += 1 + protowire.SizeBytes(anySize(a))
	}
	b := make([]byte, 0, n)
	if version != "" {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, version)
	}
	for _, a := range anys {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(anySize(a)))
		if a.GetTypeUrl() != "" {
			b = protowire.AppendTag(b, 1, protowire.BytesType)
			b = protowire.AppendString(b, a.GetTypeUrl())
		}
		if len(a.GetValue()) > 0 {
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			b = protowire.AppendBytes(b, a.GetValue())
		}
	}
	return b
}

func anySize(a *anypb.Any) int {
	n := 0
	if a.GetTypeUrl() != "" {
		n += 1 + protowire.SizeBytes(len(a.GetTypeUrl()))
	}
	if len(a.GetValue()) > 0 {
		n += 1 + protowire.SizeBytes(len(a.GetValue()))
	}
	return n
}

// newSotwBatch returns the batch of the changed names (sorted) of ts.
func newSotwBatch(ts *typeState, changed []string) *sotwBatch {
	b := &sotwBatch{version: ts.view.Version()}
	for _, n := range changed {
		if e := ts.entries[n]; e != nil {
			b.entries = append(b.entries, e)
		}
	}
	return b
}
