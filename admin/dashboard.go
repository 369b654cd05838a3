// dashboard.go: the HTML dashboard: node health (§4.6, §4.8), ring
// ownership (§4.2), the hint backlog, latency histograms and the last
// anti-entropy results (§4.7), rendered by html/template as one page with
// inline SVG, no external assets and no JavaScript.
package admin

import (
	"bytes"
	_ "embed"
	"html/template"
	"net/http"

	"github.com/dynamo-kv/dynamo"
)

//go:embed dashboard.html
var dashboardHTML string

// dashboardTmpl escapes everything it is given: node IDs, addresses, zones
// and error texts come from the network.
var dashboardTmpl = template.Must(template.New("dashboard").Funcs(template.FuncMap{
	// plusLeft places a bar's caption just past a bar of width w.
	"plusLeft": func(w int) int { return barLeft + w + 6 },
	"barLeft":  func() int { return barLeft },
	"seconds":  seconds,
}).Parse(dashboardHTML))

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
	HintsUndrawn       int // owners left out of the chart
	HintHeight         int
	Latency            []histChart
	HistHeight         int
	AntiEntropy        dynamo.AntiEntropyMetrics
	Counters           []counter
}

// counter is one named figure of the counters table.
type counter struct {
	Name  string
	Value any
}

func (h *handler) dashboard(w http.ResponseWriter, _ *http.Request) {
	var buf bytes.Buffer
	if err := dashboardTmpl.Execute(&buf, h.page()); err != nil {
		http.Error(w, "admin: render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	// Nothing but the page itself: no scripts, no fetches, inline styles.
	hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	_, _ = w.Write(buf.Bytes())
}

func (h *handler) page() page { return pageOf(h.st.Actor(), h.st.Ring(), h.st.Metrics()) }

func pageOf(actor string, v dynamo.RingView, m dynamo.Metrics) page {
	p := page{Status: statusOf(actor, v, m), Nodes: nodeRows(v), RingHeight: max(1, len(v.Nodes)) * rowHeight,
		Hints: hintsOf(m.Stats.Hints), Latency: histCharts(m), HistHeight: histTall + 20, AntiEntropy: m.AntiEntropy}
	if len(v.Nodes) > 0 {
		ideal := float64(min(v.N, len(v.Nodes))) / float64(len(v.Nodes))
		p.IdealX = barLeft + int(ideal*barWidth)
		p.IdealPct = pct(ideal)
	}
	p.HintBars = hintBars(p.Hints.Pending)
	p.HintsUndrawn = len(p.Hints.Pending) - len(p.HintBars)
	p.HintHeight = max(1, len(p.HintBars)) * rowHeight
	st := m.Stats
	p.Counters = []counter{
		{"read_repairs", st.ReadRepairs}, {"hints_stored", st.Hints.Stored}, {"hints_delivered", st.Hints.Delivered},
		{"hints_refused", st.Hints.Refused}, {"partitions_pulled", st.PartitionsPulled},
		{"partitions_dropped", st.PartitionsDropped}, {"tombstones_purged", st.TombstonesPurged},
		{"corrupt_records", st.CorruptRecords}, {"coalesced_gets", st.CoalescedGets},
		{"anti_entropy_rounds", m.AntiEntropy.Rounds}, {"anti_entropy_errors", m.AntiEntropy.Errors},
		{"served_errors", m.ServedErrors}, {"membership_changes", m.Membership.Changes},
	}
	return p
}
