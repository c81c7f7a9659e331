package peers

import (
	"fmt"
	"strings"
	"testing"
)

// recorder is a testing.TB that records how Missing ended it.
type recorder struct {
	testing.TB
	failed, skipped string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}
func (r *recorder) Skip(args ...any) { r.skipped = fmt.Sprint(args...) }

func TestMissing(t *testing.T) {
	for _, tc := range []struct {
		name, require, ci string
		wantFail          bool
	}{
		{name: "developer", wantFail: false},
		{name: "make test", require: "1", wantFail: true},
		{name: "CI", ci: "true", wantFail: true},
		{name: "other value", require: "0", wantFail: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvRequire, tc.require)
			t.Setenv("CI", tc.ci)
			r := &recorder{TB: t}
			Missing(r, "consul agent", "XDSBRIDGE_CONSUL is not set")
			got := r.skipped
			if tc.wantFail {
				got = r.failed
				if r.skipped != "" {
					t.Errorf("skipped (%q), want a failure", r.skipped)
				}
			} else if r.failed != "" {
				t.Errorf("failed (%q), want a skip", r.failed)
			}
			if !strings.Contains(got, "consul agent unavailable: XDSBRIDGE_CONSUL is not set") {
				t.Errorf("message %q does not name the peer and the reason", got)
			}
		})
	}
}
