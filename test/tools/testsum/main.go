// Command testsum runs `go test -json ...` and prints what a plain `go test`
// would (the packages' ok/FAIL lines and the output of failed tests), then
// how many tests were skipped and why. It exits with go test's status.
//
//	testsum go test -json -race ./...
//
// `make test` uses it so that a skipped test cannot go unnoticed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testsum go test -json [flags] [packages]")
		os.Exit(2)
	}
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdin, cmd.Stderr = os.Stdin, os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testsum: %v\n", err)
		os.Exit(2)
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "testsum: %v\n", err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	sum := summarize(out, w)
	runErr := cmd.Wait()
	code := 0
	if ee, ok := runErr.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if runErr != nil {
		fmt.Fprintf(w, "testsum: %v\n", runErr)
		code = 2
	}
	if code == 0 && sum.failed > 0 {
		code = 1
	}
	sum.report(w, code)
	w.Flush()
	os.Exit(code)
}

// event is one line of `go test -json` (test2json's TestEvent, and the
// build events of go build -json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// skip is a skipped test and the reason it gave.
type skip struct {
	pkg, test, reason string
}

// summary is what summarize saw.
type summary struct {
	packages int // that ran tests
	failed   int // packages that failed, build failures included
	skips    []skip
}

// run is a top-level test whose output is held until it ends: printed if
// it failed, as go test does without -v.
type run struct {
	lines []string
	// last is the last line each test (and subtest) logged, its skip reason
	// when it is skipped.
	last map[string]string
}

// summarize copies the plain go test output of the events read from r to
// w, and returns the skips and failures.
func summarize(r io.Reader, w *bufio.Writer) summary {
	var sum summary
	runs := map[string]*run{} // package + top-level test
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e event
		line := sc.Bytes()
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			fmt.Fprintf(w, "%s\n", line) // not an event: pass it on
			continue
		}
		top, _, _ := strings.Cut(e.Test, "/")
		key := e.Package + "\x00" + top
		switch {
		case e.Action == "build-output":
			w.WriteString(e.Output)
		case e.Action == "start":
			sum.packages++
		case e.Test == "" && e.Action == "output":
			if e.Output != "PASS\n" {
				w.WriteString(e.Output)
			}
		case e.Test == "" && e.Action == "fail":
			sum.failed++
			// Tests still open when the package failed (a panic, a
			// timeout): show what they printed.
			for k, ru := range runs {
				if strings.HasPrefix(k, e.Package+"\x00") {
					writeLines(w, ru.lines)
					delete(runs, k)
				}
			}
		case e.Test == "":
		case e.Action == "output":
			ru := runs[key]
			if ru == nil {
				ru = &run{last: map[string]string{}}
				runs[key] = ru
			}
			ru.lines = append(ru.lines, e.Output)
			if l := strings.TrimSpace(e.Output); l != "" && !strings.HasPrefix(l, "=== ") && !strings.HasPrefix(l, "--- ") {
				ru.last[e.Test] = l
			}
		case e.Action == "skip":
			reason := "(no reason given)"
			if ru := runs[key]; ru != nil && ru.last[e.Test] != "" {
				reason = fileLineRE.ReplaceAllString(ru.last[e.Test], "")
			}
			sum.skips = append(sum.skips, skip{e.Package, e.Test, reason})
			fallthrough
		case e.Action == "pass" || e.Action == "fail":
			if e.Test != top {
				break
			}
			if ru := runs[key]; ru != nil && e.Action == "fail" {
				writeLines(w, ru.lines)
			}
			delete(runs, key)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(w, "testsum: reading go test's output: %v\n", err)
		sum.failed++
	}
	return sum
}

// fileLineRE is the file:line prefix of a t.Log line.
var fileLineRE = regexp.MustCompile(`^[\w.-]+\.go:\d+: `)

func writeLines(w *bufio.Writer, lines []string) {
	for _, l := range lines {
		if !strings.HasPrefix(strings.TrimSpace(l), "=== ") {
			w.WriteString(l)
		}
	}
}

// report prints the skips by reason, then a closing line with go test's
// verdict.
func (s summary) report(w *bufio.Writer, code int) {
	fmt.Fprintf(w, "\n%d tests skipped", len(s.skips))
	if len(s.skips) == 0 {
		fmt.Fprintln(w, ".")
	} else {
		fmt.Fprintln(w, ", by reason:")
	}
	byReason := map[string][]skip{}
	for _, sk := range s.skips {
		byReason[sk.reason] = append(byReason[sk.reason], sk)
	}
	reasons := slices.Sorted(func(yield func(string) bool) {
		for r := range byReason {
			if !yield(r) {
				return
			}
		}
	})
	slices.SortStableFunc(reasons, func(a, b string) int { return len(byReason[b]) - len(byReason[a]) })
	for _, r := range reasons {
		sks := byReason[r]
		var names []string
		for i, sk := range sks {
			if i == 3 {
				names = append(names, fmt.Sprintf("and %d more", len(sks)-3))
				break
			}
			names = append(names, sk.pkg+" "+sk.test)
		}
		fmt.Fprintf(w, "%5d  %s\n       (%s)\n", len(sks), r, strings.Join(names, ", "))
	}
	if code != 0 {
		fmt.Fprintf(w, "FAIL: %d of %d packages failed\n", s.failed, s.packages)
		return
	}
	fmt.Fprintf(w, "ok: %d packages passed\n", s.packages)
}
