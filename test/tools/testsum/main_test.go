package main

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestSummarize reads recorded `go test -json` runs and compares what
// testsum prints with testdata/NAME.golden.
func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name string
		code int
	}{
		{name: "fail", code: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", tc.name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			sum := summarize(bytes.NewReader(in), w)
			sum.report(w, tc.code)
			w.Flush()
			golden := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != string(want) {
				t.Errorf("output differs from %s:\n%s", golden, got)
			}
			if got, lines := strings.Count(out.String(), "\n"), strings.Count(string(in), "\n"); got >= lines {
				t.Errorf("%d lines printed for %d events: passing tests' output is not held back", got, lines)
			}
		})
	}
}
