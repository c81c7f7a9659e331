package fleet

import (
	"strings"
	"testing"
)

func TestRaiseFDLimit(t *testing.T) {
	if err := RaiseFDLimit(64); err != nil {
		t.Fatal(err)
	}
	err := RaiseFDLimit(1 << 40)
	if err == nil || !strings.Contains(err.Error(), "ulimit -Hn") {
		t.Fatalf("RaiseFDLimit(1<<40) = %v, want an error saying how to raise the limit", err)
	}
}
