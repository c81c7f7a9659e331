package suggest

import "testing"

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"", "abc", 3}, {"kitten", "sitting", 3},
		{"address", "adress", 1}, {"ca_file", "ca_fil", 1}, {"same", "same", 0},
	} {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestHint(t *testing.T) {
	known := []string{"address", "admin", "aggregator", "plugins"}
	for _, tc := range []struct{ word, want string }{
		{"adress", ` (did you mean "address"?)`},
		{"ADMN", ` (did you mean "admin"?)`}, // case does not count
		{"tracing", ""},
		{"plugin", ` (did you mean "plugins"?)`},
	} {
		if got := Hint(tc.word, known); got != tc.want {
			t.Errorf("Hint(%q) = %q, want %q", tc.word, got, tc.want)
		}
	}
	// Ties go to the earliest candidate.
	if got := Closest("ab", []string{"ac", "ad"}, 2); got != "ac" {
		t.Errorf("tie: got %q", got)
	}
	if got := HintWithin("max_conections_x", []string{"max_connections"}, 3); got == "" {
		t.Error("HintWithin(3) found nothing two edits away")
	}
}
