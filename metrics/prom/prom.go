// Package prom exports a dynamo Store's metrics to Prometheus: a
// prometheus.Collector that reads Store.Metrics at each scrape and builds
// constant metrics from it, so nothing is counted twice and the dynamo
// package itself depends on no metrics backend.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(prom.New(store))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Every metric is named dynamo_*, in base units (seconds, bytes), counters
// end in _total, and every metric carries a constant node label
// (Config.NodeID), so the collectors of several Stores in one process can
// share a registry.
// The other labels are bounded: op (get, put, delete, forward), outcome
// and reason (fixed sets, see the dynamo package's Outcome and Reason
// constants), kind (request kinds), direction (in, out) and peer. A peer
// label names a member of this node's ring or a departed node it still
// holds hints for, so its values are bounded by the ring's size plus the
// nodes that left recently (rehoming drains the latter). No metric has a
// key or a partition as a label.
package prom

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynamo-kv/dynamo"
)

// Source is what a Collector reads: a *dynamo.Store (or a *dynamo.Node,
// which embeds one).
type Source interface {
	Metrics() dynamo.Metrics
}

// Collector is a prometheus.Collector over one Store's metrics. Register
// it on your own registry.
type Collector struct {
	src  Source
	node string
	all  []*prometheus.Desc
	desc descs
}

// New returns a Collector reading src's metrics at every scrape. It takes
// one snapshot now, for the node label.
func New(src Source) *Collector {
	c := &Collector{src: src, node: validUTF8(src.Metrics().Node)}
	c.desc = newDescs(c.def)
	return c
}

// def declares one metric, labelled with the node.
func (c *Collector) def(name, help string, labels ...string) *prometheus.Desc {
	d := prometheus.NewDesc("dynamo_"+name, help, labels, prometheus.Labels{"node": c.node})
	c.all = append(c.all, d)
	return d
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.all {
		ch <- d
	}
}

// Collect takes one snapshot of the Store's metrics and sends them.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	m := c.src.Metrics()
	e := emitter{ch: ch}
	d := &c.desc
	for _, r := range m.Requests {
		e.histogram(d.requestSeconds, r.Latency, r.Op, r.Outcome)
	}
	for _, q := range m.QuorumFailures {
		e.counter(d.quorumFailures, float64(q.Count), q.Op, q.Reason)
	}
	e.histogram(d.siblings, m.Siblings)
	e.histogram(d.objectBytes, m.ReadBytes, dynamo.OpGet)
	e.histogram(d.objectBytes, m.WriteBytes, dynamo.OpPut)
	for k, n := range m.Served {
		e.counter(d.served, float64(n), k)
	}
	e.counter(d.servedErrors, float64(m.ServedErrors))
	collectStats(e, d, m.Stats)
	collectAntiEntropy(e, d, m.AntiEntropy)
	e.gauge(d.members, float64(m.Membership.Members))
	e.gauge(d.reachable, float64(m.Membership.Reachable))
	e.counter(d.memberChanges, float64(m.Membership.Changes))
	e.gauge(d.ready, flag(m.Health.Ready))
	e.gauge(d.storageFailed, flag(!m.Health.Healthy()))
	if t := m.Transport; t != nil {
		e.gauge(d.conns, float64(t.ConnsIn), "in")
		e.gauge(d.conns, float64(t.ConnsOut), "out")
		e.counter(d.accepted, float64(t.Accepted))
		e.counter(d.refused, float64(t.Refused))
		e.gauge(d.inFlight, float64(t.InFlight))
		e.counter(d.busy, float64(t.Busy))
		e.counter(d.transportBytes, float64(t.BytesIn), "in")
		e.counter(d.transportBytes, float64(t.BytesOut), "out")
	}
	if s := m.Storage; s != nil {
		e.counter(d.commits, float64(s.Commits))
		e.counter(d.updates, float64(s.Updates))
		e.counter(d.fsyncs, float64(s.Syncs))
		e.counter(d.fsyncSeconds, s.SyncSeconds)
		e.counter(d.checkpoints, float64(s.Checkpoints))
		e.gauge(d.logBytes, float64(s.LogBytes))
		e.gauge(d.checkpointLag, float64(s.CheckpointLagBytes))
		e.counter(d.corruptReads, float64(s.CorruptReads))
	}
}

func collectStats(e emitter, d *descs, s dynamo.Stats) {
	e.counter(d.readRepairs, float64(s.ReadRepairs))
	e.counter(d.hintsStored, float64(s.Hints.Stored))
	e.counter(d.hintsDelivered, float64(s.Hints.Delivered))
	e.counter(d.hintsRefused, float64(s.Hints.Refused))
	e.counter(d.hintsRehomed, float64(s.Hints.Rehomed))
	e.gauge(d.hintBytes, float64(s.Hints.Bytes))
	for peer, n := range s.Hints.Pending {
		e.gauge(d.hintsPending, float64(n), peer)
	}
	e.gauge(d.transfersPending, float64(s.PendingTransfers))
	e.counter(d.partitionsPulled, float64(s.PartitionsPulled))
	e.counter(d.partitionsDropped, float64(s.PartitionsDropped))
	e.counter(d.transferKeys, float64(s.Transfer.KeysSent), "out")
	e.counter(d.transferKeys, float64(s.Transfer.KeysReceived), "in")
	e.counter(d.transferBytes, float64(s.Transfer.BytesSent), "out")
	e.counter(d.transferBytes, float64(s.Transfer.BytesReceived), "in")
	e.counter(d.tombstonesPurged, float64(s.TombstonesPurged))
	e.counter(d.corruptRecords, float64(s.CorruptRecords))
	e.counter(d.dotConflicts, float64(s.DotConflicts))
	e.counter(d.entriesFolded, float64(s.EntriesFolded))
	e.counter(d.coalescedGets, float64(s.CoalescedGets))
}

func collectAntiEntropy(e emitter, d *descs, a dynamo.AntiEntropyMetrics) {
	e.counter(d.aeRounds, float64(a.Rounds))
	e.counter(d.aeErrors, float64(a.Errors))
	e.histogram(d.aeSeconds, a.Duration)
	e.counter(d.aePartitions, float64(a.Totals.Partitions))
	e.counter(d.aeDiffPartitions, float64(a.Totals.DiffPartitions))
	e.counter(d.aeDiffKeys, float64(a.Totals.DiffKeys))
	e.counter(d.aeKeys, float64(a.Totals.KeysSent), "out")
	e.counter(d.aeKeys, float64(a.Totals.KeysReceived), "in")
	e.counter(d.aeBytes, float64(a.Totals.BytesSent), "out")
	e.counter(d.aeBytes, float64(a.Totals.BytesReceived), "in")
	for _, p := range a.Peers {
		e.gauge(d.aeLastTime, float64(p.At.UnixNano())/1e9, p.Peer)
		e.gauge(d.aeLastDiffKeys, float64(p.Result.DiffKeys), p.Peer)
		e.gauge(d.aeLastOK, flag(p.Err == ""), p.Peer)
	}
}

func flag(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// emitter sends constant metrics.
type emitter struct {
	ch chan<- prometheus.Metric
}

func (e emitter) counter(d *prometheus.Desc, v float64, labels ...string) {
	e.send(d)(prometheus.NewConstMetric(d, prometheus.CounterValue, v, e.labels(labels)...))
}

func (e emitter) gauge(d *prometheus.Desc, v float64, labels ...string) {
	e.send(d)(prometheus.NewConstMetric(d, prometheus.GaugeValue, v, e.labels(labels)...))
}

func (e emitter) histogram(d *prometheus.Desc, h dynamo.Histogram, labels ...string) {
	buckets := make(map[float64]uint64, len(h.Bounds))
	for i, n := range h.Cumulative() {
		buckets[h.Bounds[i]] = n
	}
	e.send(d)(prometheus.NewConstHistogram(d, h.Count, h.Sum, buckets, e.labels(labels)...))
}

// labels makes every label value valid UTF-8: peer IDs come from gossip,
// and a scrape must not fail over them.
func (e emitter) labels(labels []string) []string {
	for i, l := range labels {
		labels[i] = validUTF8(l)
	}
	return labels
}

func validUTF8(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// send returns a function that sends a metric, or an invalid metric
// carrying the error that made it (which the registry reports).
func (e emitter) send(d *prometheus.Desc) func(prometheus.Metric, error) {
	return func(m prometheus.Metric, err error) {
		if err != nil {
			m = prometheus.NewInvalidMetric(d, err)
		}
		e.ch <- m
	}
}
