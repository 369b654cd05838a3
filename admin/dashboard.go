// dashboard.go: the HTML dashboard: ring ownership (§4.2), node health
// (§4.6, §4.8) and the hint backlog drawn as inline SVG by html/template,
// with no external assets and no JavaScript.
package admin

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"unicode/utf8"

	"github.com/dynamo-kv/dynamo"
)

//go:embed dashboard.html
var dashboardHTML string

var dashboardTmpl = template.Must(template.New("dashboard").Funcs(template.FuncMap{
	// plusLeft places a bar's caption just past a bar of width w.
	"plusLeft": func(w int) int { return barLeft + w + 6 },
}).Parse(dashboardHTML))

// Geometry of the SVG charts, in pixels.
const (
	barLeft   = 170 // x where bars start; labels sit left of it
	barWidth  = 420 // a bar at 100%
	rowHeight = 24
	labelLen  = 22 // runes of a node ID drawn as a label; the full ID is in its <title>
)

// page is what the dashboard template renders.
type page struct {
	Status Status
	Nodes  []nodeRow
	// RingHeight is the ownership chart's height; IdealX the x of the even
	// replica share (N/nodes) marked across it.
	RingHeight, IdealX int
	IdealPct           string
	Hints              Hints
	HintBars           []hintBar
	HintHeight         int
	Counters           []counter
}

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

// counter is one named figure of the counters table.
type counter struct {
	Name  string
	Value int64
}

func (h *handler) dashboard(w http.ResponseWriter, _ *http.Request) {
	p := h.page()
	var buf bytes.Buffer
	if err := dashboardTmpl.Execute(&buf, p); err != nil {
		http.Error(w, "admin: render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	// Nothing but the page itself: no scripts, no fetches, inline styles.
	hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	_, _ = w.Write(buf.Bytes())
}

func (h *handler) page() page {
	v := h.st.Ring()
	p := page{Status: h.status(), Hints: h.hints(), RingHeight: max(1, len(v.Nodes)) * rowHeight}
	if len(v.Nodes) > 0 {
		ideal := float64(min(v.N, len(v.Nodes))) / float64(len(v.Nodes))
		p.IdealX = barLeft + int(ideal*barWidth)
		p.IdealPct = pct(ideal)
	}
	for i, n := range v.Nodes {
		r := nodeRow{NodeView: n, Label: shorten(n.ID), State: state(n), Y: i * rowHeight, TextY: i*rowHeight + 16}
		if v.Partitions > 0 {
			fs, rs := float64(n.First)/float64(v.Partitions), float64(n.Replica)/float64(v.Partitions)
			r.FirstW, r.ReplicaW = int(fs*barWidth), int(rs*barWidth)
			r.FirstPct, r.ReplicaPct = pct(fs), pct(rs)
		}
		p.Nodes = append(p.Nodes, r)
	}
	most := 1
	if len(p.Hints.Pending) > 0 {
		most = max(1, p.Hints.Pending[0].Hints) // sorted, most first
	}
	for i, o := range p.Hints.Pending {
		p.HintBars = append(p.HintBars, hintBar{OwnerHints: o, Label: shorten(o.Owner), Y: i * rowHeight, TextY: i*rowHeight + 16,
			W: max(1, o.Hints*barWidth/most)})
	}
	p.HintHeight = max(1, len(p.HintBars)) * rowHeight
	st := h.st.Stats()
	p.Counters = []counter{
		{"read_repairs", st.ReadRepairs}, {"hints_stored", st.Hints.Stored}, {"hints_delivered", st.Hints.Delivered},
		{"hints_refused", st.Hints.Refused}, {"partitions_pulled", st.PartitionsPulled},
		{"partitions_dropped", st.PartitionsDropped}, {"tombstones_purged", st.TombstonesPurged},
		{"corrupt_records", st.CorruptRecords}, {"coalesced_gets", st.CoalescedGets},
	}
	return p
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
