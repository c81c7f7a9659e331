package builtin_test

import (
	"slices"
	"testing"

	"github.com/xdsbridge/xdsbridge/internal/builtin"
)

func TestTable(t *testing.T) {
	types := builtin.Types()
	if !slices.IsSorted(types) || len(types) == 0 {
		t.Fatalf("Types() = %v; want sorted, not empty", types)
	}
	for _, typ := range types {
		p, ok := builtin.Plugin(typ, "1.2.3")
		if !ok {
			t.Fatalf("Plugin(%q) not found", typ)
		}
		if p.Name != typ || p.Version != "1.2.3" || p.Configure == nil {
			t.Errorf("Plugin(%q) = name %q, version %q, configure set %v; want the plugin named after its type", typ, p.Name, p.Version, p.Configure != nil)
		}
	}
	if _, ok := builtin.Plugin("nope", "1"); ok {
		t.Error(`Plugin("nope") found`)
	}
}
