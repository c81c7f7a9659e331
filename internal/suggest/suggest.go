// Package suggest finds the known word closest to a mistyped one, for the
// "did you mean" hints of error messages.
package suggest

import (
	"fmt"
	"strings"
)

// Closest returns the candidate at most maxEdits edits away from word
// (compared in lower case), the earliest of candidates on a tie, or "".
func Closest(word string, candidates []string, maxEdits int) string {
	word = strings.ToLower(word)
	best, bestD := "", maxEdits+1
	for _, c := range candidates {
		if d := Distance(word, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// Hint returns ` (did you mean "x"?)` for the candidate at most two edits
// from word, or "" when none is that close.
func Hint(word string, candidates []string) string {
	return hint(Closest(word, candidates, 2))
}

// HintWithin is Hint with a chosen edit bound.
func HintWithin(word string, candidates []string, maxEdits int) string {
	return hint(Closest(word, candidates, maxEdits))
}

func hint(best string) string {
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// Distance is the Levenshtein distance between a and b, in bytes.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
