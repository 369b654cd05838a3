// charts.go: the geometry of the dashboard's inline SVG charts, computed
// server-side so the page needs no JavaScript: ownership bars (§4.2), the
// hint backlog (§4.6) and latency histograms.
package admin

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/dynamo-kv/dynamo"
)

// Geometry of the SVG charts, in pixels.
const (
	barLeft     = 170 // x where bars start; labels sit left of it
	barWidth    = 420 // a bar at 100%
	rowHeight   = 24
	labelLen    = 22 // runes of a node ID drawn as a label; the full ID is in its <title>
	maxHintBars = 32 // owners drawn in the hint chart; the rest are counted below it
	histCol     = 30 // width of a histogram column
	histTall    = 120
)

// nodeRow is one node: its table row and its ownership bar.
type nodeRow struct {
	dynamo.NodeView
	Label      string // ID cut to labelLen runes
	State      string // "up", "down" or "suspected"
	Y, TextY   int
	FirstW     int
	ReplicaW   int
	FirstPct   string
	ReplicaPct string
}

// hintBar is one owner's hint backlog.
type hintBar struct {
	OwnerHints
	Label    string
	Y, TextY int
	W        int
}

// histChart is one latency histogram.
type histChart struct {
	Op, Outcome string
	Count       uint64
	Mean, P99   string
	Width       int
	Columns     []histColumn
}

// histColumn is one bucket of a histogram.
type histColumn struct {
	X, Y, H int // the bar; Y+H is the baseline
	LabelX  int
	Label   string // the bucket's bound, on every other column
	Title   string
	Count   uint64
}

func nodeRows(v dynamo.RingView) []nodeRow {
	var rows []nodeRow
	for i, n := range v.Nodes {
		r := nodeRow{NodeView: n, Label: shorten(n.ID), State: state(n), Y: i * rowHeight, TextY: i*rowHeight + 16}
		if v.Partitions > 0 {
			fs, rs := float64(n.First)/float64(v.Partitions), float64(n.Replica)/float64(v.Partitions)
			r.FirstW, r.ReplicaW = int(fs*barWidth), int(rs*barWidth)
			r.FirstPct, r.ReplicaPct = pct(fs), pct(rs)
		}
		rows = append(rows, r)
	}
	return rows
}

// hintBars draws the first maxHintBars owners of pending (sorted, most
// first) to scale with the first. Hint targets are whatever node IDs writes
// named, so their number is bounded only by the hint store: the page stays
// small whatever it holds.
func hintBars(pending []OwnerHints) []hintBar {
	var bars []hintBar
	for i, o := range pending[:min(len(pending), maxHintBars)] {
		bars = append(bars, hintBar{OwnerHints: o, Label: shorten(o.Owner), Y: i * rowHeight, TextY: i*rowHeight + 16,
			W: max(1, o.Hints*barWidth/max(1, pending[0].Hints))})
	}
	return bars
}

// histCharts draws the latency histograms of every operation's successful
// requests.
func histCharts(m dynamo.Metrics) []histChart {
	var out []histChart
	for _, r := range m.Requests {
		if r.Outcome != dynamo.OutcomeOK || (r.Op != dynamo.OpGet && r.Latency.Count == 0) {
			continue
		}
		h := r.Latency
		c := histChart{Op: r.Op, Outcome: r.Outcome, Count: h.Count, Mean: seconds(h.Mean()), P99: seconds(quantile(h, 0.99)),
			Width: len(h.Counts) * histCol}
		var most uint64 = 1
		for _, n := range h.Counts {
			most = max(most, n)
		}
		for i, n := range h.Counts {
			col := histColumn{X: i * histCol, H: int(n * histTall / most), LabelX: i*histCol + histCol/2, Count: n}
			if n > 0 {
				col.H = max(col.H, 1)
			}
			col.Y = histTall - col.H
			bound := "+Inf"
			if i < len(h.Bounds) {
				bound = seconds(h.Bounds[i])
			}
			col.Title = fmt.Sprintf("≤ %s: %d", bound, n)
			if i%3 == 0 {
				col.Label = bound
			}
			c.Columns = append(c.Columns, col)
		}
		out = append(out, c)
	}
	return out
}

// seconds formats a duration given in seconds.
func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Microsecond).String()
}

// state names a node's health as the dashboard shows it.
func state(n dynamo.NodeView) string {
	switch {
	case n.Reachable:
		return "up"
	case n.MembershipUp && n.Suspected:
		return "suspected"
	}
	return "down"
}

// shorten cuts s to labelLen runes, marking the cut.
func shorten(s string) string {
	if utf8.RuneCountInString(s) <= labelLen {
		return s
	}
	r := []rune(s)
	return string(r[:labelLen-1]) + "…"
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }
