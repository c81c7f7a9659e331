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

func TestNamed(t *testing.T) {
	in := "- {name: a, v: 1}\n- 7\n- {name: b, v: 2}\n- {name: a, v: 3}\n- {v: 4}\n- {name: bad, v: 5}\n"
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(in), &doc); err != nil {
		t.Fatal(err)
	}
	var errs []string
	r := NewReader(len(in), func(line int, msg string) { errs = append(errs, fmt.Sprintf("%d: %s", line, msg)) })
	var paths []string
	got := Named(r, "items", doc.Content[0].Content, "expected an item, found", "duplicate item",
		func(path string, line int, n *yaml.Node) (string, string, int, bool) {
			paths = append(paths, path)
			var name, v string
			var nameLine int
			for _, pr := range r.Pairs(n, path) {
				switch pr.Key.Value {
				case "name":
					name, nameLine = pr.Val.Value, pr.Key.Line
				case "v":
					v = pr.Val.Value
				}
			}
			return name + "=" + v, name, nameLine, name != "bad"
		})
	if want := "a=1 b=2 =4"; strings.Join(got, " ") != want {
		t.Errorf("values %q, want %q", strings.Join(got, " "), want)
	}
	if want := "items[0] items[2] items[3] items[4] items[5]"; strings.Join(paths, " ") != want {
		t.Errorf("read at %q, want %q", strings.Join(paths, " "), want)
	}
	wantErrs := `2: items[1]: expected an item, found a number (7); 4: items[3].name: duplicate item "a" (first at line 1)`
	if g := strings.Join(errs, "; "); g != wantErrs {
		t.Errorf("errors %q, want %q", g, wantErrs)
	}
}
