package yamlnode

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

func TestProblems(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       []Problem
	}{
		{name: "unknown anchor in a list", data: "plugins:\n  - *nothing\n",
			want: []Problem{{2, "unknown anchor 'nothing' referenced"}}},
		{name: "unknown anchor as a value", data: "a: 1\nb:\n  c: *x\n",
			want: []Problem{{3, "unknown anchor 'x' referenced"}}},
		{name: "anchor defined after its alias", data: "# *a in a comment\nb: \"*a\"\nc: [1, *a]\nd: &a {e: 1}\n",
			want: []Problem{{3, "unknown anchor 'a' referenced"}}},
		{name: "longer name is another alias", data: "a: *ab\nb: *a\n",
			want: []Problem{{1, "unknown anchor 'ab' referenced"}}},
		{name: "syntax error names its line", data: "a: 1\nb: [\n",
			want: []Problem{{2, "did not find expected node content"}}},
		{name: "type errors, one each", data: "a: x\nb: y\n",
			want: []Problem{{1, "cannot unmarshal !!str `x` into int"}, {2, "cannot unmarshal !!str `y` into int"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v map[string]int
			err := yaml.Unmarshal([]byte(tc.data), &v)
			if err == nil {
				t.Fatal("yaml.Unmarshal: no error")
			}
			if diff := cmp.Diff(tc.want, Problems([]byte(tc.data), err)); diff != "" {
				t.Errorf("Problems(%q) (-want +got):\n%s\nerror: %v", tc.data, diff, err)
			}
		})
	}
}
