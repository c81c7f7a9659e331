package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// Figure is one measured quantity, for every system that has it.
type Figure struct {
	// Key is stable across runs, for tools: scenario.quantity.
	Key   string `json:"key"`
	Label string `json:"label"`
	Unit  string `json:"unit"`
	// Values by system; a system without the figure (a feature it lacks,
	// or a failed measurement) is absent.
	Values map[string]float64 `json:"values"`
}

// SweepPoint is the full push at one number of clients.
type SweepPoint struct {
	System  string  `json:"system"`
	Clients int     `json:"clients"`
	LastMS  float64 `json:"last_client_ms"`
	P99MS   float64 `json:"p99_ms"`
	CPUMS   float64 `json:"cpu_ms_per_push"`
	MBytes  float64 `json:"mbytes_per_push"`
}

// Target is one of the targets and how this run did.
type Target struct {
	Name     string `json:"name"`
	Want     string `json:"want"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
	// Scaled is set when the profile runs the target's scenario smaller
	// than the target states.
	Scaled bool `json:"scaled,omitempty"`
}

// verdict is "met" or missed, marked when the run was scaled down.
func (t Target) verdict(missed string) string {
	v := "met"
	if !t.Met {
		v = missed
	}
	if t.Scaled {
		v += " (scaled-down run)"
	}
	return v
}

// Results is everything one run measured.
type Results struct {
	Profile  string        `json:"profile"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Host     Host          `json:"host"`
	Systems  []string      `json:"systems"`
	Figures  []*Figure     `json:"figures"`
	Sweep    []SweepPoint  `json:"sweep"`
	Targets  []Target      `json:"targets"`
	Notes    []string      `json:"notes,omitempty"`
}

// Host describes the machine.
type Host struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}

// figure returns the figure with key, adding it (in order) if new.
func (r *Results) figure(key, label, unit string) *Figure {
	for _, f := range r.Figures {
		if f.Key == key {
			return f
		}
	}
	f := &Figure{Key: key, Label: label, Unit: unit, Values: map[string]float64{}}
	r.Figures = append(r.Figures, f)
	return f
}

// set records a value; NaN and infinities are not recorded.
func (r *Results) set(system, key, label, unit string, v float64) {
	f := r.figure(key, label, unit)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	f.Values[system] = v
}

// value returns a recorded value.
func (r *Results) value(system, key string) (float64, bool) {
	for _, f := range r.Figures {
		if f.Key == key {
			v, ok := f.Values[system]
			return v, ok
		}
	}
	return 0, false
}

// JSON writes r as indented JSON.
func (r *Results) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ratioSystems are the denominators of the table's ratio columns.
var ratioSystems = []string{"snapshot", "linear", "floor"}

// Table writes the figures, one row each, with a column per system and the
// ratios of xdsbridge (1) to each of the others, then the targets.
func (r *Results) Table(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"figure"}
	head = append(head, r.Systems...)
	for i, s := range ratioSystems {
		if contains(r.Systems, s) && contains(r.Systems, "xdsbridge") {
			head = append(head, fmt.Sprintf("(1)/(%d)", i+2))
		}
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, f := range r.Figures {
		row := []string{f.Label + " (" + f.Unit + ")"}
		for _, s := range r.Systems {
			row = append(row, formatValue(f.Values[s], hasKey(f.Values, s)))
		}
		for _, s := range ratioSystems {
			if !contains(r.Systems, s) || !contains(r.Systems, "xdsbridge") {
				continue
			}
			a, okA := f.Values["xdsbridge"]
			b, okB := f.Values[s]
			switch {
			case !okA || !okB:
				row = append(row, "-")
			case b == 0 && a == 0:
				row = append(row, "=")
			case b == 0:
				row = append(row, "-")
			default:
				row = append(row, formatRatio(a/b))
			}
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "target\twant\tmeasured\t")
		for _, t := range r.Targets {
			fmt.Fprintf(tw, "%s\t%s\t%s  %s\t\n", t.Name, t.Want, t.Measured, t.verdict("MISSED"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}

func hasKey(m map[string]float64, k string) bool {
	_, ok := m[k]
	return ok
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func formatValue(v float64, ok bool) string {
	if !ok {
		return "n/a"
	}
	return formatNumber(v)
}

func formatNumber(v float64) string {
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0"
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

func formatRatio(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	if v >= 10 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
