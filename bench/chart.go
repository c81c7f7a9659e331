package bench

import (
	"fmt"
	"io"
	"math"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Chart draws the full-push sweep as a PNG: when the last client has the
// push, and the CPU per push, against the number of clients, one line per
// system, on log scales.
func (r *Results) Chart(w io.Writer) error {
	p := r.sweepSpec()
	latency := r.sweepPlot(fmt.Sprintf("Full push %s: last client has it", p), "ms", func(pt SweepPoint) float64 { return pt.LastMS })
	cpu := r.sweepPlot(fmt.Sprintf("Full push %s: control-plane CPU per push", p), "CPU ms", func(pt SweepPoint) float64 { return pt.CPUMS })
	if latency == nil || cpu == nil {
		return fmt.Errorf("chart: no full-push results")
	}
	img := vgimg.NewWith(vgimg.UseWH(13*vg.Inch, 5*vg.Inch), vgimg.UseDPI(110))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Inch / 2, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 8}
	plots := [][]*plot.Plot{{latency, cpu}}
	canvases := plot.Align(plots, tiles, dc)
	latency.Draw(canvases[0][0])
	cpu.Draw(canvases[0][1])
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	return nil
}

func (r *Results) sweepSpec() string {
	for _, f := range r.Figures {
		if f.Key == "fullpush.last_ms" {
			// "full push C×E → N SotW: …": keep "C×E".
			var c, e, n int
			if _, err := fmt.Sscanf(f.Label, "full push %d×%d → %d", &c, &e, &n); err == nil {
				return fmt.Sprintf("%d×%d, SotW clients", c, e)
			}
		}
	}
	return ""
}

func (r *Results) sweepPlot(title, unit string, y func(SweepPoint) float64) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "clients"
	p.Y.Label.Text = unit + " (log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	any := false
	for _, sys := range r.Systems {
		i := slices.Index(SystemNames(), sys)
		var pts plotter.XYs
		for _, pt := range r.Sweep {
			if v := y(pt); pt.System == sys && v > 0 && !math.IsNaN(v) {
				pts = append(pts, plotter.XY{X: float64(pt.Clients), Y: v})
			}
		}
		if len(pts) == 0 {
			continue
		}
		slices.SortFunc(pts, func(a, b plotter.XY) int { return int(a.X - b.X) })
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			continue
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(2)
		points.Color = plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		p.Legend.Add(fmt.Sprintf("(%d) %s", i+1, sys), line, points)
		any = true
	}
	if !any {
		return nil
	}
	return p
}
