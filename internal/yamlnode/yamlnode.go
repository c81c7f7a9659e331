// Package yamlnode reads yaml.v3 node trees the way xdsbridge's file parsers
// need: aliases followed, merge keys (<<) expanded, duplicate keys reported,
// and every problem placed at its line.
package yamlnode

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/xdsbridge/xdsbridge/internal/suggest"
)

// Pair is a key and its value in a mapping.
type Pair struct{ Key, Val *yaml.Node }

// Resolve follows an alias to the node it names.
func Resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// IsNull reports whether n is absent or null.
func IsNull(n *yaml.Node) bool {
	n = Resolve(n)
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// IsMerge reports whether k is a merge key (<<).
func IsMerge(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge"
}

// Where names path in a message; the top level has no path.
func Where(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}

// Describe says what a node is, for "expected X, found Y" messages.
func Describe(n *yaml.Node) string {
	n = Resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing (null)"
		case "!!bool":
			return fmt.Sprintf("a boolean (%s)", n.Value)
		case "!!int", "!!float":
			return fmt.Sprintf("a number (%s)", n.Value)
		default:
			return fmt.Sprintf("a string (%q)", n.Value)
		}
	default:
		return "an unknown node"
	}
}

// Reader is the part of a file parser that every xdsbridge file parser
// shares: it reports problems at their lines, bounds the nodes visited with
// a budget (which stops alias bombs: "billion laughs"), and reads mappings
// with known keys, strings and lists. A parser embeds it and supplies
// report, which records a problem in the parser's own error type.
type Reader struct {
	report    func(line int, msg string)
	budget    int
	exhausted bool // the budget ran out
	reported  bool // and that has been reported
}

// NewReader returns a Reader for a document of size bytes: its budget is
// 10,000 nodes plus 100 per byte. report receives each problem, at a line
// of at least 1.
func NewReader(size int, report func(line int, msg string)) *Reader {
	return &Reader{report: report, budget: 10_000 + 100*size}
}

// Errorf reports a problem at line (1 when line is not positive).
func (r *Reader) Errorf(line int, format string, args ...any) {
	r.report(max(line, 1), fmt.Sprintf(format, args...))
}

// Spend takes cost from the budget and reports whether any was left. The
// caller that notices the budget ran out reports it with TooLarge, at its
// own line.
func (r *Reader) Spend(cost int) bool {
	if r.exhausted {
		return false
	}
	r.budget -= cost
	r.exhausted = r.budget < 0
	return !r.exhausted
}

// Exhausted reports whether the budget ran out.
func (r *Reader) Exhausted() bool { return r.exhausted }

// TooLarge reports, once, that the budget ran out, if it did.
func (r *Reader) TooLarge(line int, path string) {
	if r.exhausted && !r.reported {
		r.reported = true
		r.Errorf(line, "%s: too large, or expands too far through aliases", Where(path))
	}
}

// YAMLError reports an error from the yaml package for data at the lines it
// is about (see Problems).
func (r *Reader) YAMLError(data []byte, err error) {
	for _, pr := range Problems(data, err) {
		r.Errorf(pr.Line, "yaml: %s", pr.Msg)
	}
}

// Fields walks the mapping v under key k (k is nil at the top level) and
// calls set for each key of known. It reports an unknown key with a
// suggestion (or the list of known keys); at the top level, keys starting
// with "x-" are skipped: a place for anchors, as in Compose files. A null
// value is an empty mapping. It reports whether v was a mapping (or null).
func (r *Reader) Fields(path string, k, v *yaml.Node, known []string, set func(name string, k, v *yaml.Node)) bool {
	v = Resolve(v)
	if IsNull(v) {
		return true
	}
	if v.Kind != yaml.MappingNode {
		line := v.Line
		if k != nil {
			line = k.Line
		}
		r.Errorf(line, "%s: expected a mapping, found %s", Where(path), Describe(v))
		return false
	}
	for _, pr := range r.Pairs(v, path) {
		name := pr.Key.Value
		if path == "" && strings.HasPrefix(name, "x-") {
			continue
		}
		if !slices.Contains(known, name) {
			in := " in " + path
			if path == "" {
				in = " at the top level"
			}
			r.Errorf(pr.Key.Line, "unknown key %q%s%s", name, in, Suggestion(name, known))
			continue
		}
		set(name, pr.Key, pr.Val)
	}
	return true
}

// Suggestion returns " (did you mean "x"?)" for the closest of known, or
// the list of known when none is close.
func Suggestion(s string, known []string) string {
	if h := suggest.Hint(s, known); h != "" {
		return h
	}
	return " (valid: " + strings.Join(known, ", ") + ")"
}

// Str reads the string value v of key k. Null is "".
func (r *Reader) Str(path string, k, v *yaml.Node) (string, bool) {
	v = Resolve(v)
	if IsNull(v) {
		return "", true
	}
	if v.Kind != yaml.ScalarNode {
		r.Errorf(k.Line, "%s: expected a string, found %s", path, Describe(v))
		return "", false
	}
	return v.Value, true
}

// List returns the entries of the list v of key k; null is an empty list.
func (r *Reader) List(path string, k, v *yaml.Node) []*yaml.Node {
	v = Resolve(v)
	if IsNull(v) {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		r.Errorf(k.Line, "%s: expected a list, found %s", path, Describe(v))
		return nil
	}
	return v.Content
}

// Pairs returns the entries of mapping n with merge keys expanded, explicit
// keys first. It reports duplicate and non-scalar keys at path.
func (r *Reader) Pairs(n *yaml.Node, path string) []Pair {
	if !r.Spend(len(n.Content)/2 + 1) {
		return nil
	}
	var out, merged []Pair
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := Resolve(n.Content[i]), n.Content[i+1]
		if IsMerge(k) {
			merged = append(merged, r.mergeSources(v, path)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			r.Errorf(k.Line, "%s: a key must be a plain value, found %s", Where(path), Describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			r.Errorf(k.Line, "%s: duplicate key %q (first at line %d)", Where(path), k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, Pair{k, v})
	}
	for _, m := range merged {
		if _, ok := seen[m.Key.Value]; !ok {
			seen[m.Key.Value] = m.Key
			out = append(out, m)
		}
	}
	return out
}

// mergeSources returns the pairs a merge key's value brings in: a mapping,
// or a list of mappings where earlier ones win.
func (r *Reader) mergeSources(v *yaml.Node, path string) []Pair {
	v = Resolve(v)
	switch v.Kind {
	case yaml.MappingNode:
		return r.Pairs(v, path)
	case yaml.SequenceNode:
		var out []Pair
		for _, m := range v.Content {
			m = Resolve(m)
			if m.Kind != yaml.MappingNode {
				r.Errorf(m.Line, "%s: a merge key (<<) takes mappings, found %s", Where(path), Describe(m))
				continue
			}
			out = append(out, r.Pairs(m, path)...)
		}
		return out
	default:
		r.Errorf(v.Line, "%s: a merge key (<<) takes a mapping, found %s", Where(path), Describe(v))
		return nil
	}
}

// Named reads entries, the items of the list at path, as mappings with
// unique names: an item that is not a mapping is reported as
// "path[i]: <notMapping> <what it is>"; read parses each mapping (at path
// "path[i]", starting at line) and returns its value, its name, the line of
// its name and whether it is free of problems; a name an earlier item
// already has is reported at its line as "path[i].name: <duplicate> "x"
// (first at line N)". It returns the values of the items free of problems,
// in order.
func Named[T any](r *Reader, path string, entries []*yaml.Node, notMapping, duplicate string,
	read func(path string, line int, n *yaml.Node) (v T, name string, nameLine int, ok bool)) []T {
	var out []T
	seen := map[string]int{}
	for i, e := range entries {
		p := fmt.Sprintf("%s[%d]", path, i)
		line := e.Line
		e = Resolve(e)
		if e.Kind != yaml.MappingNode {
			r.Errorf(line, "%s: %s %s", p, notMapping, Describe(e))
			continue
		}
		v, name, nameLine, ok := read(p, line, e)
		if name != "" {
			if first, dup := seen[name]; dup {
				r.Errorf(nameLine, "%s.name: %s %q (first at line %d)", p, duplicate, name, first)
				ok = false
			} else {
				seen[name] = nameLine
			}
		}
		if ok {
			out = append(out, v)
		}
	}
	return out
}
