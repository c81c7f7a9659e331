// Package yamlnode reads yaml.v3 node trees the way xdsbridge's file parsers
// need: aliases followed, merge keys (<<) expanded, duplicate keys reported,
// and every problem placed at its line.
package yamlnode

import (
	"fmt"

	"gopkg.in/yaml.v3"
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

// Walker reads mappings for a parser: Errorf records a problem at a line,
// and Spend charges the parser's node budget (which stops alias bombs),
// returning false once it is spent.
type Walker struct {
	Errorf func(line int, format string, args ...any)
	Spend  func(cost int) bool
}

// Pairs returns the entries of mapping n with merge keys expanded, explicit
// keys first. It reports duplicate and non-scalar keys at path.
func (w Walker) Pairs(n *yaml.Node, path string) []Pair {
	if !w.Spend(len(n.Content)/2 + 1) {
		return nil
	}
	var out, merged []Pair
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := Resolve(n.Content[i]), n.Content[i+1]
		if IsMerge(k) {
			merged = append(merged, w.mergeSources(v, path)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			w.Errorf(k.Line, "%s: a key must be a plain value, found %s", Where(path), Describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			w.Errorf(k.Line, "%s: duplicate key %q (first at line %d)", Where(path), k.Value, first.Line)
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
func (w Walker) mergeSources(v *yaml.Node, path string) []Pair {
	v = Resolve(v)
	switch v.Kind {
	case yaml.MappingNode:
		return w.Pairs(v, path)
	case yaml.SequenceNode:
		var out []Pair
		for _, m := range v.Content {
			m = Resolve(m)
			if m.Kind != yaml.MappingNode {
				w.Errorf(m.Line, "%s: a merge key (<<) takes mappings, found %s", Where(path), Describe(m))
				continue
			}
			out = append(out, w.Pairs(m, path)...)
		}
		return out
	default:
		w.Errorf(v.Line, "%s: a merge key (<<) takes a mapping, found %s", Where(path), Describe(v))
		return nil
	}
}
