package drill

import (
	"fmt"
	"image/color"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// chartEvents are the timeline's moments the chart marks.
var chartEvents = []string{"experiment started", "notice", "deregistration seen", "target gone", "instance terminated", "instance shutting-down",
	"replacement healthy"}

// Chart draws the load's requests and failures per second, with the
// timeline's moments marked, as a PNG (gonum/plot; .svg in path gives SVG).
func (r *Report) Chart(path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("spot-agent drill of %s: %s", r.Stack, r.Verdict)
	if len(p.Title.Text) > 110 {
		p.Title.Text = p.Title.Text[:107] + "..."
	}
	p.X.Label.Text = "seconds of load"
	p.Y.Label.Text = "requests per second"
	p.Add(plotter.NewGrid())
	sent, failed := make(plotter.XYs, len(r.Seconds)), make(plotter.XYs, len(r.Seconds))
	top := 1.0
	for i, s := range r.Seconds {
		sent[i] = plotter.XY{X: s.Offset, Y: float64(s.OK)}
		failed[i] = plotter.XY{X: s.Offset, Y: float64(s.Failed)}
		top = max(top, float64(s.Sent))
	}
	if len(r.Seconds) == 0 {
		sent, failed = plotter.XYs{{}}, plotter.XYs{{}}
	}
	ok, err := plotter.NewLine(sent)
	if err != nil {
		return err
	}
	ok.Color, ok.Width = color.RGBA{G: 120, B: 200, A: 255}, vg.Points(1.5)
	bad, err := plotter.NewLine(failed)
	if err != nil {
		return err
	}
	bad.Color, bad.Width = color.RGBA{R: 210, A: 255}, vg.Points(1.5)
	p.Add(ok, bad)
	p.Legend.Add("answered (2xx, 3xx)", ok)
	p.Legend.Add("failed (4xx, 5xx, connection errors)", bad)
	p.Legend.Top = true
	var marks plotter.XYs
	var labels []string
	n := 0
	for _, e := range r.Timeline {
		if !slices.Contains(chartEvents, e.What) {
			continue
		}
		line, err := plotter.NewLine(plotter.XYs{{X: e.Offset, Y: 0}, {X: e.Offset, Y: top * 1.15}})
		if err != nil {
			return err
		}
		line.Color, line.Dashes = color.Gray{Y: 90}, []vg.Length{vg.Points(3), vg.Points(3)}
		p.Add(line)
		// Each label a step lower than the one before: moments seconds
		// apart stay readable.
		marks = append(marks, plotter.XY{X: e.Offset, Y: top * (1.12 - 0.07*float64(n%8))})
		labels = append(labels, " "+e.What)
		n++
	}
	if len(marks) > 0 {
		l, err := plotter.NewLabels(plotter.XYLabels{XYs: marks, Labels: labels})
		if err != nil {
			return err
		}
		for i := range l.TextStyle {
			l.TextStyle[i].Font.Size = vg.Points(8)
			l.TextStyle[i].XAlign = draw.XLeft
		}
		p.Add(l)
	}
	p.Y.Min, p.Y.Max = 0, top*1.2
	return p.Save(10*vg.Inch, 5*vg.Inch, path)
}
