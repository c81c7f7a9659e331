package dns

import (
	"log/slog"
	"testing"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// TestStateSendsOnlyChanges: once the host has a cluster, an answer with the
// same endpoints is no change and a different one is, whatever the
// endpoints carry. (The comparison used to count every endpoint with
// metadata as changed, so such a cluster was sent again on every refresh.)
func TestStateSendsOnlyChanges(t *testing.T) {
	withMeta := func(v string) []sdk.Endpoint {
		return []sdk.Endpoint{{Address: "10.0.0.1", Port: 80, Metadata: map[string]any{"version": v}}}
	}
	plain := func(port uint32) []sdk.Endpoint { return []sdk.Endpoint{{Address: "10.0.0.1", Port: port}} }
	tests := []struct {
		name             string
		first, same, new []sdk.Endpoint
	}{
		{"with metadata", withMeta("1"), withMeta("1"), withMeta("2")},
		{"without metadata", plain(80), plain(80), plain(81)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newState(slog.New(slog.DiscardHandler), []watched{{name: "a.example.", cluster: "a"}, {name: "b.example.", cluster: "b"}})
			st.apply(result{i: 0, ans: answer{endpoints: tt.first}})
			st.apply(result{i: 1, ans: answer{endpoints: plain(90)}})
			u, ok := st.pending()
			if !ok || !u.Full || len(u.Clusters) != 2 {
				t.Fatalf("pending = %+v, %v; want a full state of two clusters", u, ok)
			}
			st.sent(u)

			st.apply(result{i: 0, ans: answer{endpoints: tt.same}}) // equal, not the same slice
			if u, ok := st.pending(); ok {
				t.Fatalf("after an unchanged answer, pending = %+v; want nothing", u)
			}

			st.apply(result{i: 0, ans: answer{endpoints: tt.new}})
			u, ok = st.pending()
			if !ok || u.Full || len(u.Clusters) != 1 || u.Clusters[0].Name != "a" || !u.Clusters[0].Endpoints[0].Equal(&tt.new[0]) {
				t.Fatalf("after a changed answer, pending = %+v, %v; want cluster a alone", u, ok)
			}
			st.sent(u)
			if u, ok := st.pending(); ok {
				t.Fatalf("after sending, pending = %+v; want nothing", u)
			}
		})
	}
}
