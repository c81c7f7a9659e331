package store

import (
	"slices"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

type watchState uint8

const (
	// live watches are indexed and may fire.
	live watchState = iota
	// fired watches have sent their one response; they stay indexed until
	// cancelled but are skipped.
	fired
	// cancelled watches are out of every index.
	cancelled
)

// watch is one pending request of one stream for one type. Watches are
// one-shot: go-control-plane creates a new one for every request. All fields
// but the immutable request data are guarded by Store.mu.
type watch struct {
	ts    *typeState
	delta bool
	// full is set for SotW watches of full-state types.
	full bool

	req     *cachev3.Request
	sotwCh  chan cachev3.Response
	dreq    *cachev3.DeltaRequest
	deltaCh chan cachev3.DeltaResponse

	// The subscription's state, read-only: go-control-plane does not change
	// it between the watch's creation and its cancellation.
	wildcard   bool
	subscribed map[string]struct{}
	returned   map[string]string

	state watchState
	// slots are the watch's places in the name indexes.
	slots []slot

	// set is set for the index entry of Subs, which are notified through
	// it; every other field but the subscription and state is unused.
	set *subSet

	// Scratch space of the Apply in progress.
	touched     bool
	pendSet     []*entry
	pendRemoved []string
}

func (w *watch) typeURL() string {
	if w.delta {
		return w.dreq.GetTypeUrl()
	}
	return w.req.GetTypeUrl()
}

func (w *watch) nodeID() string {
	if w.delta {
		return w.dreq.GetNode().GetId()
	}
	return w.req.GetNode().GetId()
}

// CreateWatch answers a SotW request at once if the client lacks something,
// or registers a one-shot watch answered by the Apply that changes what the
// client subscribes to.
//
// Cluster and Listener responses carry every subscribed resource (all of
// them for a wildcard subscription); other types carry only the subscribed
// resources whose version differs from what the client was last sent. The
// first request of a stream for Cluster or Listener is always answered. A
// NACK is never answered with the rejected version again: the client gets
// the next version that differs.
func (s *Store) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	typeURL := req.GetTypeUrl()
	if req.GetErrorDetail() != nil {
		s.logger.Debug("nack", "type_url", typeURL, "node", req.GetNode().GetId(),
			"version", req.GetVersionInfo(), "err", req.GetErrorDetail().GetMessage())
	}
	w := &watch{
		full:       cachev3.ResourceRequiresFullStateInSotw(typeURL),
		req:        req,
		sotwCh:     ch,
		wildcard:   sub.IsWildcard(),
		subscribed: sub.SubscribedResources(),
		returned:   sub.ReturnedResources(),
	}
	first := req.GetResponseNonce() == ""
	return s.createWatch(w, func(ts *typeState) bool {
		r := s.sotwInitial(ts, typeURL, w, first)
		if r == nil {
			return false
		}
		s.sendSotw(w, r)
		return true
	})
}

// CreateDeltaWatch answers a delta request at once if the client lacks
// something or holds a resource that no longer exists, or registers a
// one-shot watch. The first request of a wildcard subscription is always
// answered, even with nothing in it.
func (s *Store) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, ch chan cachev3.DeltaResponse) (func(), error) {
	typeURL := req.GetTypeUrl()
	if req.GetErrorDetail() != nil {
		s.logger.Debug("nack", "type_url", typeURL, "node", req.GetNode().GetId(),
			"err", req.GetErrorDetail().GetMessage())
	}
	w := &watch{
		delta:      true,
		dreq:       req,
		deltaCh:    ch,
		wildcard:   sub.IsWildcard(),
		subscribed: sub.SubscribedResources(),
		returned:   sub.ReturnedResources(),
	}
	first := req.GetResponseNonce() == ""
	return s.createWatch(w, func(ts *typeState) bool {
		r := s.deltaInitial(ts, typeURL, w, first)
		if r == nil {
			return false
		}
		s.sendDelta(w, r)
		return true
	})
}

func noop() {}

// createWatch runs answer (which responds and returns true if the client
// lacks something) under the read lock, and registers w if it did not
// respond. Registration happens under the write lock, after answering again
// if an Apply slipped in between.
func (s *Store) createWatch(w *watch, answer func(*typeState) bool) (func(), error) {
	typeURL := w.typeURL()
	s.mu.RLock()
	gen := s.gen
	done := answer(s.types[typeURL])
	s.mu.RUnlock()
	if done {
		return noop, nil
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen && answer(s.types[typeURL]) {
		return noop, nil
	}
	ts := s.types[typeURL]
	if ts == nil {
		ts = newTypeState(typeURL)
		s.types[typeURL] = ts
	}
	ts.index(w)
	return func() { s.cancel(w) }, nil
}

// cancel takes w out of every index. It is safe to call any number of times.
func (s *Store) cancel(w *watch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.state == cancelled {
		return
	}
	w.state = cancelled
	ts := w.ts
	ts.unindex(w)
	if ts.watches == 0 && len(ts.entries) == 0 && s.types[ts.url] == ts {
		delete(s.types, ts.url)
	}
}

// differs reports whether the client's view of name (returned) is behind
// the store's (cur, nil when absent): cur is new or changed for the client,
// or the client holds a resource that is gone.
func differs(returned map[string]string, name string, cur *entry) (changed, gone bool) {
	known, ok := returned[name]
	if cur != nil {
		return !ok || known != cur.version, false
	}
	return false, ok
}

// lacking returns the resources of view w subscribes to whose version
// differs from what the client has, sorted by name.
func (w *watch) lacking(view *typeView) []*entry {
	keep := func(e *entry) bool {
		changed, _ := differs(w.returned, e.name, e)
		return changed
	}
	if !w.wildcard {
		return view.selectNamesFunc(w.subscribed, keep)
	}
	var out []*entry
	for _, e := range view.entries {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

// sotwInitial computes the immediate answer to a SotW request, or nil.
// Called with the lock held (read or write).
func (s *Store) sotwInitial(ts *typeState, typeURL string, w *watch, first bool) *response {
	view := &typeView{typeURL: typeURL}
	if ts != nil {
		view = ts.view
	}
	if w.full {
		lacking := first
		switch {
		case lacking:
		case w.wildcard:
			lacking = !view.matches(w.returned)
		default:
			for name := range w.subscribed {
				var cur *entry
				if ts != nil {
					cur = ts.entries[name]
				}
				if changed, gone := differs(w.returned, name, cur); changed || gone {
					lacking = true
					break
				}
			}
		}
		if !lacking {
			return nil
		}
		return s.fullResponse(w, view)
	}

	set := w.lacking(view)
	if len(set) == 0 {
		return nil
	}
	return &response{req: w.req, view: view, kind: partial, entries: set, base: w.returned, mu: &s.mu}
}

func (s *Store) fullResponse(w *watch, view *typeView) *response {
	if w.wildcard {
		return &response{req: w.req, view: view, kind: fullWildcard}
	}
	return &response{req: w.req, view: view, kind: fullNamed, subscribed: w.subscribed}
}

// deltaInitial computes the immediate answer to a delta request, or nil.
// Called with the lock held (read or write).
func (s *Store) deltaInitial(ts *typeState, typeURL string, w *watch, first bool) *deltaResponse {
	view := &typeView{typeURL: typeURL}
	if ts != nil {
		view = ts.view
	}
	set := w.lacking(view)
	var removed []string
	for name := range w.returned {
		if ts != nil && ts.entries[name] != nil {
			continue
		}
		if _, ok := w.subscribed[name]; ok || w.wildcard {
			removed = append(removed, name)
		}
	}
	slices.Sort(removed)
	if len(set) == 0 && len(removed) == 0 && !(first && w.wildcard && knownType(typeURL)) {
		return nil
	}
	return &deltaResponse{req: w.dreq, view: view, set: set, removed: removed, base: w.returned, mu: &s.mu}
}

// notify answers the watches concerned by the changed names (sorted) of ts,
// gone holding the entries of those removed. Called with the write lock
// held, right after ts changed.
func (s *Store) notify(ts *typeState, changed []string, gone map[string]*entry) {
	var (
		touched []*watch
		batch   *sotwBatch
	)
	visit := func(w *watch, name string, cur *entry) {
		switch {
		case w.set != nil:
			if batch == nil {
				batch = newSotwBatch(ts, changed)
			}
			for _, sub := range w.set.subs {
				sub.mark(name, cur, gone[name], batch)
			}
		case w.state == live:
			touched = w.consider(name, cur, touched)
		}
	}
	for _, name := range changed {
		cur := ts.entries[name]
		if idx := ts.byName[name]; idx != nil {
			for _, ie := range idx.entries {
				visit(ie.w, name, cur)
			}
		}
		for _, ie := range ts.wildcard.entries {
			visit(ie.w, name, cur)
		}
	}
	for _, w := range touched {
		s.respond(ts, w)
	}
}

// consider records what the change of name means for w, appending w to
// touched the first time w has something to send.
func (w *watch) consider(name string, cur *entry, touched []*watch) []*watch {
	if w.touched && w.full {
		// A full-state response is decided; its content comes from the view.
		return touched
	}
	changed, gone := differs(w.returned, name, cur)
	switch {
	case changed:
		if !w.full {
			w.pendSet = append(w.pendSet, cur)
		}
	case gone && w.delta:
		w.pendRemoved = append(w.pendRemoved, name)
	case gone && w.full:
	default:
		// Gone from a partial SotW type: SotW cannot say so.
		return touched
	}
	if !w.touched {
		w.touched = true
		touched = append(touched, w)
	}
	return touched
}

// respond sends the response w has accumulated and retires w.
func (s *Store) respond(ts *typeState, w *watch) {
	view := ts.view
	switch {
	case w.delta:
		s.sendDelta(w, &deltaResponse{req: w.dreq, view: view, set: w.pendSet, removed: w.pendRemoved, base: w.returned, mu: &s.mu})
	case w.full:
		s.sendSotw(w, s.fullResponse(w, view))
	default:
		s.sendSotw(w, &response{req: w.req, view: view, kind: partial, entries: w.pendSet, base: w.returned, mu: &s.mu})
	}
	w.touched, w.pendSet, w.pendRemoved = false, nil, nil
	w.state = fired
}

// sendSotw delivers r without blocking. The servers give every watch room
// for its one response, so a full channel is a bug worth a log line.
func (s *Store) sendSotw(w *watch, r *response) {
	select {
	case w.sotwCh <- r:
	default:
		s.logger.Error("watch channel full, response dropped",
			"type_url", w.typeURL(), "node", w.nodeID(), "version", r.GetResponseVersion())
	}
}

func (s *Store) sendDelta(w *watch, r *deltaResponse) {
	select {
	case w.deltaCh <- r:
	default:
		s.logger.Error("delta watch channel full, response dropped",
			"type_url", w.typeURL(), "node", w.nodeID(), "version", r.GetResponseVersion())
	}
}
