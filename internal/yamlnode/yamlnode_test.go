package yamlnode

import (
	"fmt"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestPairs(t *testing.T) {
	cases := []struct {
		name, in string
		keys     string // key=value, in order
		errs     string
	}{
		{"plain", "a: 1\nb: 2\n", "a=1 b=2", ""},
		{"merge keeps explicit keys first", "base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n", "y=3 x=1", ""},
		{"merge list, earlier wins", "m:\n  <<: [{x: 1}, {x: 2, z: 3}]\n", "x=1 z=3", ""},
		{"duplicate", "m:\n  a: 1\n  a: 2\n", "a=1", "3: m: duplicate key \"a\" (first at line 2)"},
		{"merge of a scalar", "m:\n  <<: 7\n  a: 1\n", "a=1", "2: m: a merge key (<<) takes a mapping, found a number (7)"},
		{"non-scalar key", "m:\n  [a]: 1\n", "", "2: m: a key must be a plain value, found a list"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(tc.in), &doc); err != nil {
				t.Fatal(err)
			}
			root := doc.Content[0]
			var errs []string
			w := NewReader(len(tc.in), func(line int, msg string) {
				errs = append(errs, fmt.Sprintf("%d: ", line)+msg)
			})
			target := root
			if root.Content[0].Value != "a" {
				for i := 0; i+1 < len(root.Content); i += 2 {
					if root.Content[i].Value == "m" {
						target = root.Content[i+1]
					}
				}
			}
			var got []string
			for _, p := range w.Pairs(target, "m") {
				got = append(got, p.Key.Value+"="+Resolve(p.Val).Value)
			}
			if g := strings.Join(got, " "); g != tc.keys {
				t.Errorf("pairs %q, want %q", g, tc.keys)
			}
			if g := strings.Join(errs, "; "); g != tc.errs {
				t.Errorf("errors %q, want %q", g, tc.errs)
			}
		})
	}
}

func TestSpendStops(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("a: 1\n"), &doc); err != nil {
		t.Fatal(err)
	}
	w := NewReader(0, func(int, string) {})
	w.Spend(10_001)
	if got := w.Pairs(doc.Content[0], ""); got != nil {
		t.Fatalf("a spent budget still returned %d pairs", len(got))
	}
}
