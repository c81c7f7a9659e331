package config

import (
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/xdsbridge/xdsbridge/internal/yamlnode"
)

// Locate returns the line in the configuration file of a dotted path inside
// the plugin's config block, such as "tls.ca_file" or "names[2].name" (the
// paths sdk.FieldError carries). A key's line is the line of the key. When
// the path is not found, Locate returns the line of the deepest part of it
// that is: the config block's own line when none is, or the plugin's line
// when the plugin has no config block.
func (p *Plugin) Locate(path string) int {
	line := p.Line
	if p.configLine > 0 {
		line = p.configLine
	}
	n := p.configNode
	if n == nil {
		return line
	}
	for _, s := range splitPath(path) {
		n = yamlnode.Resolve(n)
		if s.key == "" {
			if n.Kind != yaml.SequenceNode || s.index >= len(n.Content) {
				return line
			}
			n = n.Content[s.index]
			line = n.Line
			continue
		}
		if n.Kind != yaml.MappingNode {
			return line
		}
		k, v := lookup(n, s.key, 0)
		if k == nil {
			return line
		}
		line, n = k.Line, v
	}
	return line
}

// segment is one step of a path: a key, or (key "") a list index.
type segment struct {
	key   string
	index int
}

// splitPath splits "a.b[2].c" into a, b, [2], c. It stops at the first
// malformed part.
func splitPath(path string) []segment {
	var out []segment
	for path != "" {
		switch {
		case path[0] == '.':
			path = path[1:]
		case path[0] == '[':
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return out
			}
			i, err := strconv.Atoi(path[1:end])
			if err != nil || i < 0 {
				return out
			}
			out = append(out, segment{index: i})
			path = path[end+1:]
		default:
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			out = append(out, segment{key: path[:end]})
			path = path[end:]
		}
	}
	return out
}

// lookup finds key in mapping m, explicit keys before merged ones. depth
// bounds merge chains, which aliases can make circular.
func lookup(m *yaml.Node, key string, depth int) (k, v *yaml.Node) {
	if depth > 32 {
		return nil, nil
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn := yamlnode.Resolve(m.Content[i])
		if yamlnode.IsMerge(kn) {
			merges = append(merges, yamlnode.Resolve(m.Content[i+1]))
			continue
		}
		if kn.Kind == yaml.ScalarNode && kn.Value == key {
			return kn, m.Content[i+1]
		}
	}
	for _, src := range merges {
		srcs := []*yaml.Node{src}
		if src.Kind == yaml.SequenceNode {
			srcs = src.Content
		}
		for _, s := range srcs {
			if s = yamlnode.Resolve(s); s.Kind == yaml.MappingNode {
				if k, v := lookup(s, key, depth+1); k != nil {
					return k, v
				}
			}
		}
	}
	return nil, nil
}
