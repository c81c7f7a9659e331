package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"maps"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/types/known/anypb"
)

// typeView is one generation of a type's resources. It never changes once
// built; what responses need from it is computed lazily, once, and shared.
type typeView struct {
	typeURL string
	// entries are sorted by name.
	entries []*entry

	versionOnce sync.Once
	version     string

	anysOnce sync.Once
	anys     []*anypb.Any

	versionsOnce sync.Once
	versions     map[string]string

	// all is the SotW response body of every resource, under Version.
	all sharedBody
}

// merge returns the next generation: v with the changed names (sorted)
// replaced by their entries in cur, or dropped when absent from cur.
func (v *typeView) merge(changed []string, cur map[string]*entry) *typeView {
	out := make([]*entry, 0, len(v.entries)+len(changed))
	i, j := 0, 0
	for i < len(v.entries) || j < len(changed) {
		if j == len(changed) || (i < len(v.entries) && v.entries[i].name < changed[j]) {
			out = append(out, v.entries[i])
			i++
			continue
		}
		name := changed[j]
		if i < len(v.entries) && v.entries[i].name == name {
			i++
		}
		if e := cur[name]; e != nil {
			out = append(out, e)
		}
		j++
	}
	return &typeView{typeURL: v.typeURL, entries: out}
}

// Version is the type version: a hash of the sorted (name, version) pairs,
// "" when there are no resources.
func (v *typeView) Version() string {
	v.versionOnce.Do(func() { v.version = hashPairs(v.entries) })
	return v.version
}

// Anys returns every resource of the generation, sorted by name, for
// wildcard SotW responses. The slice is shared: do not modify it.
func (v *typeView) Anys() []*anypb.Any {
	v.anysOnce.Do(func() { v.anys = anysOf(v.entries) })
	return v.anys
}

// returnedAll returns a new map of every resource name to its version.
func (v *typeView) returnedAll() map[string]string {
	v.versionsOnce.Do(func() {
		v.versions = make(map[string]string, len(v.entries))
		for _, e := range v.entries {
			v.versions[e.name] = e.version
		}
	})
	return maps.Clone(v.versions)
}

// matches reports whether returned holds exactly the generation's names and
// versions.
func (v *typeView) matches(returned map[string]string) bool {
	if len(returned) != len(v.entries) {
		return false
	}
	for _, e := range v.entries {
		if known, ok := returned[e.name]; !ok || known != e.version {
			return false
		}
	}
	return true
}

// find returns the entry called name, or nil.
func (v *typeView) find(name string) *entry {
	i, ok := slices.BinarySearchFunc(v.entries, name, func(e *entry, name string) int {
		return strings.Compare(e.name, name)
	})
	if !ok {
		return nil
	}
	return v.entries[i]
}

// selectNames returns the entries named in names that exist, sorted by name.
func (v *typeView) selectNames(names map[string]struct{}) []*entry {
	return v.selectNamesFunc(names, nil)
}

// selectNamesFunc is selectNames keeping only the entries keep accepts (all
// when keep is nil). It allocates only for what it returns.
func (v *typeView) selectNamesFunc(names map[string]struct{}, keep func(*entry) bool) []*entry {
	var out []*entry
	if len(names)*4 >= len(v.entries) {
		// Many names: one pass over the generation keeps the order.
		for _, e := range v.entries {
			if _, ok := names[e.name]; ok && (keep == nil || keep(e)) {
				out = append(out, e)
			}
		}
		return out
	}
	for name := range names {
		if e := v.find(name); e != nil && (keep == nil || keep(e)) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b *entry) int { return strings.Compare(a.name, b.name) })
	return out
}

// hashPairs hashes the (name, version) pairs of entries sorted by name. It is
// the version of a type, or of the subset a REST client asked for.
func hashPairs(entries []*entry) string {
	if len(entries) == 0 {
		return ""
	}
	h := sha256.New()
	var buf []byte
	for _, e := range entries {
		buf = buf[:0]
		buf = binary.AppendUvarint(buf, uint64(len(e.name)))
		buf = append(buf, e.name...)
		buf = binary.AppendUvarint(buf, uint64(len(e.version)))
		buf = append(buf, e.version...)
		h.Write(buf)
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:8])
}

func anysOf(entries []*entry) []*anypb.Any {
	out := make([]*anypb.Any, len(entries))
	for i, e := range entries {
		out[i] = e.any
	}
	return out
}
