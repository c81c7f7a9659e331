package yamlnode

import (
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one message of an error from the yaml package and the line
// it is about.
type Problem struct {
	Line int
	Msg  string
}

var (
	lineRE          = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownAnchorRE = regexp.MustCompile(`^unknown anchor '([^']*)' referenced$`)
)

// Problems splits err, returned by the yaml package for data, into its
// messages, each placed at its line. yaml.v3 names no line for an alias
// to an anchor not defined before it; that one is placed at the alias.
// A message whose line cannot be told is placed at line 1.
func Problems(data []byte, err error) []Problem {
	msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	if te, ok := err.(*yaml.TypeError); ok {
		msgs = te.Errors
	}
	out := make([]Problem, 0, len(msgs))
	for _, msg := range msgs {
		p := Problem{Line: 1, Msg: msg}
		if m := lineRE.FindStringSubmatch(msg); m != nil {
			if n, err := strconv.Atoi(m[1]); err == nil {
				p.Line = n
			}
			p.Msg = m[2]
		} else if m := unknownAnchorRE.FindStringSubmatch(msg); m != nil {
			if n := aliasLine(data, m[1]); n > 0 {
				p.Line = n
			}
		}
		out = append(out, p)
	}
	return out
}

// aliasLine returns the line of the first alias *name in data, 0 when
// there is none. yaml.v3 reports the first alias whose anchor it has not
// seen yet, which is the first alias to that name in the text. An alias
// stands alone between separators; text after a comment sign is skipped.
func aliasLine(data []byte, name string) int {
	alias := "*" + name
	for i, line := range strings.Split(string(data), "\n") {
		for off := 0; off < len(line); {
			j := strings.Index(line[off:], alias)
			if j < 0 {
				break
			}
			j += off
			end := j + len(alias)
			if isComment(line[:j]) {
				break
			}
			if (j == 0 || strings.IndexByte(" \t[{,", line[j-1]) >= 0) &&
				(end == len(line) || strings.IndexByte(" \t\r]},", line[end]) >= 0) {
				return i + 1
			}
			off = j + 1
		}
	}
	return 0
}

// isComment reports whether what follows s on its line is in a comment.
func isComment(s string) bool {
	return strings.HasPrefix(strings.TrimLeft(s, " \t"), "#") || strings.Contains(s, " #") || strings.Contains(s, "\t#")
}
