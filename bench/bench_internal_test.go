package bench

import (
	"bytes"
	"image/png"
	"math"
	"strings"
	"testing"

	"github.com/xdsbridge/xdsbridge/bench/fleet"
)

func TestMix(t *testing.T) {
	kinds := mix(10, [3]int{70, 20, 10})
	count := map[fleet.Kind]int{}
	for _, k := range kinds {
		count[k]++
	}
	if count[fleet.SotW] != 7 || count[fleet.Delta] != 2 || count[fleet.REST] != 1 {
		t.Errorf("mix %v", count)
	}
	if kinds[0] != fleet.SotW {
		t.Errorf("first client %v", kinds[0])
	}
}

func TestPercentile(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct{ p, want float64 }{{50, 5}, {99, 10}, {100, 10}, {0, 1}, {10, 1}, {11, 2}} {
		if got := percentile(s, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if !math.IsNaN(percentile(nil, 50)) {
		t.Error("percentile of nothing")
	}
	if median([]float64{3, 1, 2}) != 2 {
		t.Error("median")
	}
}

func TestSummary(t *testing.T) {
	const ms = int64(1e6)
	o := &outcome{
		starts: map[uint32]int64{1: 0, 2: 100 * ms},
		reports: []fleet.EventReport{
			{Seq: 1, Expected: 3, Receipts: []fleet.Receipt{{Kind: fleet.SotW, At: 2 * ms}, {Kind: fleet.Delta, At: 5 * ms}, {Kind: fleet.REST, At: 900 * ms}}},
			{Seq: 2, Expected: 2, Receipts: []fleet.Receipt{{Kind: fleet.SotW, At: 104 * ms}}},
		},
	}
	s := o.summary()
	if s.expected != 5 || s.got != 4 {
		t.Errorf("expected %d got %d", s.expected, s.got)
	}
	if len(s.stream) != 3 || s.stream[2] != 5 || len(s.rest) != 1 || s.rest[0] != 900 {
		t.Errorf("latencies %v %v", s.stream, s.rest)
	}
	// Event 2 is incomplete: it has no "last client".
	if len(s.last) != 1 || s.last[0] != 5 || len(s.lastREST) != 1 {
		t.Errorf("last %v %v", s.last, s.lastREST)
	}
}

func TestReport(t *testing.T) {
	r := &Results{Profile: "test", Systems: SystemNames()}
	r.set("xdsbridge", "fullpush.last_ms", "full push 100×100 → 500 SotW: last client has it", "ms", 40)
	r.set("snapshot", "fullpush.last_ms", "", "", 400)
	r.set("floor", "fullpush.last_ms", "", "", 38)
	r.set("linear", "x", "rest only", "ms", math.NaN())
	r.set("xdsbridge", "oneofmany.last_ms", "1 of 1000", "ms", 50)
	for _, sys := range SystemNames() {
		for i, n := range []int{100, 500} {
			r.Sweep = append(r.Sweep, SweepPoint{System: sys, Clients: n, LastMS: float64(10 * (i + 1)), CPUMS: float64(5 * (i + 1))})
		}
	}
	run := &runner{res: r, opts: Options{Profile: Quick()}}
	run.targets()
	var b bytes.Buffer
	if err := r.Table(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"(1)/(2)", "0.10", "1.05", "n/a", "≥ 5× faster", "10.0× faster", "50.00 ms  MISSED", "met"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	var js bytes.Buffer
	if err := r.JSON(&js); err != nil {
		t.Fatal(err)
	}
	var img bytes.Buffer
	if err := r.Chart(&img); err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(&img); err != nil {
		t.Fatalf("chart is not a PNG: %v", err)
	}
}

func TestReadme(t *testing.T) {
	r := &Results{Profile: "quick", Systems: SystemNames()}
	r.set("xdsbridge", "fullpush.last_ms", "full push: last client has it", "ms", 40)
	r.set("floor", "fullpush.last_ms", "", "", 38)
	r.set("linear", "fullpush.last_ms", "", "", 41)
	r.set("xdsbridge", "nacks", "NACKs, all scenarios", "count", 0)
	r.set("xdsbridge", "fleet.p99_ms", "fleet: p99 client", "ms", 300)
	run := &runner{res: r, opts: Options{Profile: Quick()}}
	run.targets()
	var b bytes.Buffer
	if err := r.Markdown(&b, "docs/perf/quick.md"); err != nil {
		t.Fatal(err)
	}
	section := b.String()
	for _, want := range []string{
		"[docs/perf/quick.md](docs/perf/quick.md)",
		"| figure | xdsbridge | SnapshotCache | LinearCache | floor |",
		"| full push: last client has it | 40.00 ms |  | 41.00 ms | 38.00 ms |",
		"| NACKs, all scenarios | 0 |",
		"| ≤ 1.2× floor | 1.05× (40.0 vs 38.0 ms) | met |",
		"| faster than LinearCache | 0.98× (40.0 vs 41.0 ms) | met |",
		"| ≤ 250 ms at 5,000 clients | 300.0 ms | **missed** (scaled-down run) |",
		"of 4 targets met",
	} {
		if !strings.Contains(section, want) {
			t.Errorf("section lacks %q:\n%s", want, section)
		}
	}
	doc := "# x\n\n## Performance\n\n" + ReadmeBegin + "\nold table\n" + ReadmeEnd + "\n\nafter\n"
	out, err := SpliceReadme([]byte(doc), b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := "# x\n\n## Performance\n\n" + ReadmeBegin + "\n" + strings.TrimSpace(section) + "\n" + ReadmeEnd + "\n\nafter\n"
	if string(out) != want {
		t.Errorf("spliced:\n%s\nwant:\n%s", out, want)
	}
	again, err := SpliceReadme(out, b.Bytes())
	if err != nil || !bytes.Equal(again, out) {
		t.Errorf("splicing twice changed the document (%v)", err)
	}
	if _, err := SpliceReadme([]byte("# no markers\n"), b.Bytes()); err == nil {
		t.Error("no error for a document without the markers")
	}
}
