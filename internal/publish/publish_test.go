package publish

import (
	"testing"
	"time"
)

// The clock remembers the last versions of each type, newest first.
func TestPushClockLookup(t *testing.T) {
	c := NewPushClock()
	t0 := time.Unix(1000, 0)
	for i := range versionsKept + 2 {
		c.published("T", string(rune('a'+i)), t0.Add(time.Duration(i)*time.Second))
	}
	if _, _, ok := c.Lookup("T", "a"); ok {
		t.Error("the oldest version is still remembered beyond the bound")
	}
	_, pub, ok := c.Lookup("T", string(rune('a'+versionsKept+1)))
	if !ok || !pub.Equal(t0.Add(time.Duration(versionsKept+1)*time.Second)) {
		t.Errorf("newest version: published %v, %v", pub, ok)
	}
	c.published("T", "z", t0.Add(time.Hour))
	c.published("T", "z", t0.Add(2*time.Hour))
	if _, pub, _ := c.Lookup("T", "z"); !pub.Equal(t0.Add(2 * time.Hour)) {
		t.Errorf("a version published twice: lookup gives %v, want the newest", pub)
	}
	if _, _, ok := (*PushClock)(nil).Lookup("T", "z"); ok {
		t.Error("a nil clock knows a version")
	}
}
