// Package store is the xDS resource store: one versioned collection of Envoy
// resources of every type, served to state-of-the-world streams through
// Subs (subscriptions kept for a stream's life, see Subscribe) and to
// go-control-plane's delta and REST servers through the cache.Cache
// interface.
//
// Each resource is marshalled once per version and the bytes are shared by
// every response that carries it; a SotW response many streams send (every
// resource of a generation, one Apply's changes, a shared subscription's
// selection) is encoded once. Versions are content hashes, so replicas
// fed the same input serve the same bytes under the same version strings.
// Watches are indexed by the resource names they subscribe to: the cost of a
// change grows with the number of clients subscribed to the changed
// resources, not with the total number of subscriptions.
package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Item is one resource to serve.
type Item struct {
	// TypeURL is the xDS type URL, e.g. resource.ClusterType. The message
	// type named by its last path segment must be the type of Resource.
	TypeURL string
	// Name is the resource name clients subscribe to.
	Name string
	// Resource is the resource. The store marshals it deterministically and
	// keeps it for Entries and Lookup: do not modify it after Apply.
	Resource proto.Message
	// Sources are the plugin instances the resource comes from, sorted. They
	// are kept for debugging and NACK attribution and do not affect the
	// version.
	Sources []string
}

// Ref names a resource.
type Ref struct{ TypeURL, Name string }

// Entry is a served resource, as reported by Entries and Lookup.
type Entry struct {
	TypeURL string
	Name    string
	// Version is the content hash of the resource as served.
	Version string
	Sources []string
	// Resource is shared with the store: do not modify it.
	Resource proto.Message
}

// Store holds the resources served to xDS clients and the clients' pending
// watches. It implements cachev3.Cache. The zero value is not usable; call
// New.
//
// Every cancel function returned by CreateWatch and CreateDeltaWatch must be
// called eventually; go-control-plane's servers call it on the stream's next
// request of the type and when the stream ends. A watch that has fired stays
// indexed, inert, until then: unindexing it costs as much as the number of
// names it subscribes to, and that cost belongs to the client's next request
// rather than to the Apply that answered every client.
type Store struct {
	logger *slog.Logger

	mu sync.RWMutex
	// types holds every type that has resources or watches.
	types map[string]*typeState
	// gen counts the Apply calls that changed something. A watch computed
	// under the read lock is registered only if gen has not moved since.
	gen uint64
}

var _ cachev3.Cache = (*Store)(nil)

// New returns an empty store. A nil logger discards log output.
func New(logger *slog.Logger) *Store {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{logger: logger, types: make(map[string]*typeState)}
}

// entry is one version of one resource. Entries are immutable and shared by
// every response that carries them.
type entry struct {
	name    string
	version string
	msg     proto.Message
	sources []string
	// any is what SotW responses carry.
	any *anypb.Any
	// res is what delta responses carry.
	res *discovery.Resource
}

func (e *entry) export(typeURL string) Entry {
	return Entry{
		TypeURL:  typeURL,
		Name:     e.name,
		Version:  e.version,
		Sources:  slices.Clone(e.sources),
		Resource: e.msg,
	}
}

var marshalOptions = proto.MarshalOptions{Deterministic: true}

// newEntry marshals and hashes an item. It runs outside the store's lock.
func newEntry(it Item) (*entry, error) {
	switch {
	case it.TypeURL == "":
		return nil, fmt.Errorf("resource %q: empty type URL", it.Name)
	case it.Name == "":
		return nil, fmt.Errorf("resource %s: empty name", it.TypeURL)
	case it.Resource == nil:
		return nil, fmt.Errorf("resource %s %q: nil resource", it.TypeURL, it.Name)
	}
	msgName := string(proto.MessageName(it.Resource))
	if it.TypeURL[strings.LastIndexByte(it.TypeURL, '/')+1:] != msgName {
		return nil, fmt.Errorf("resource %s %q: message is %s", it.TypeURL, it.Name, msgName)
	}
	b, err := marshalOptions.Marshal(it.Resource)
	if err != nil {
		return nil, fmt.Errorf("resource %s %q: marshal: %w", it.TypeURL, it.Name, err)
	}
	version := hashBytes(b)
	a := &anypb.Any{TypeUrl: it.TypeURL, Value: b}
	sources := slices.Clone(it.Sources)
	slices.Sort(sources)
	return &entry{
		name:    it.Name,
		version: version,
		msg:     it.Resource,
		sources: slices.Compact(sources),
		any:     a,
		res:     &discovery.Resource{Name: it.Name, Version: version, Resource: a},
	}, nil
}

// hashBytes is the version of a marshalled resource: the first 16 hex
// characters of its SHA-256.
func hashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Apply upserts set and removes remove, of any types, as one atomic step, and
// notifies the watches the change concerns. An item whose bytes are unchanged
// changes nothing (its sources are updated without notifying anyone).
// Removals are applied before upserts, so a name in both ends up set; for a
// name set twice the last item wins.
//
// The error reports items that could not be marshalled or are malformed;
// every other item is still applied.
func (s *Store) Apply(set []Item, remove []Ref) error {
	var errs []error
	changes := make(map[string]map[string]*entry)
	byType := func(typeURL string) map[string]*entry {
		m := changes[typeURL]
		if m == nil {
			m = make(map[string]*entry)
			changes[typeURL] = m
		}
		return m
	}
	for _, r := range remove {
		if r.TypeURL == "" || r.Name == "" {
			errs = append(errs, fmt.Errorf("remove %s %q: empty type URL or name", r.TypeURL, r.Name))
			continue
		}
		byType(r.TypeURL)[r.Name] = nil
	}
	for _, it := range set {
		e, err := newEntry(it)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		byType(it.TypeURL)[it.Name] = e
	}
	if len(changes) == 0 {
		return errors.Join(errs...)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	type typeChange struct {
		ts    *typeState
		names []string
		gone  map[string]*entry
	}
	var changed []typeChange
	for typeURL, ch := range changes {
		ts := s.types[typeURL]
		if ts == nil {
			ts = newTypeState(typeURL)
		}
		names, gone := ts.apply(ch)
		if len(ts.entries) > 0 || ts.watches > 0 {
			s.types[typeURL] = ts
		} else {
			delete(s.types, typeURL)
		}
		if len(names) > 0 {
			changed = append(changed, typeChange{ts: ts, names: names, gone: gone})
		}
	}
	if len(changed) == 0 {
		return errors.Join(errs...)
	}
	s.gen++
	// ADS streams receive every type's responses through one FIFO channel:
	// notify in the order Envoy needs them (CDS before EDS, LDS before RDS).
	slices.SortFunc(changed, func(a, b typeChange) int { return CompareTypes(a.ts.url, b.ts.url) })
	for _, c := range changed {
		s.notify(c.ts, c.names, c.gone)
	}
	return errors.Join(errs...)
}

// CompareTypes orders type URLs as aggregated streams must send them:
// Cluster, ClusterLoadAssignment, Listener, RouteConfiguration, the other
// types go-control-plane knows in its order, then unknown types by URL.
func CompareTypes(a, b string) int {
	ra, rb := cachev3.GetResponseType(a), cachev3.GetResponseType(b)
	if ra != rb {
		return int(ra) - int(rb)
	}
	return strings.Compare(a, b)
}

// knownType reports whether go-control-plane knows the type.
func knownType(typeURL string) bool {
	return cachev3.GetResponseType(typeURL) != types.UnknownType
}

// Entries returns every served resource, sorted by type URL then name.
func (s *Store) Entries() []Entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	urls := make([]string, 0, len(s.types))
	n := 0
	for url, ts := range s.types {
		urls = append(urls, url)
		n += len(ts.entries)
	}
	slices.Sort(urls)
	out := make([]Entry, 0, n)
	for _, url := range urls {
		ts := s.types[url]
		for _, e := range ts.view.entries {
			// The map holds the latest sources of an unchanged resource.
			out = append(out, ts.entries[e.name].export(url))
		}
	}
	return out
}

// Lookup returns the served resource typeURL/name.
func (s *Store) Lookup(typeURL, name string) (Entry, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ts := s.types[typeURL]
	if ts == nil {
		return Entry{}, false
	}
	e := ts.entries[name]
	if e == nil {
		return Entry{}, false
	}
	return e.export(typeURL), true
}

// TypeVersion returns the version of a type: a hash of its resources' names
// and versions, or "" when the type has no resources.
func (s *Store) TypeVersion(typeURL string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ts := s.types[typeURL]
	if ts == nil {
		return ""
	}
	return ts.view.Version()
}
