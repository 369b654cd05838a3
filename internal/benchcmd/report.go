// report.go: one workload's result, printed as a table row or a JSON line.
package benchcmd

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
)

// result is what one workload measured. Latencies are of successful requests.
type result struct {
	Workload  string `json:"workload"`
	Clients   int    `json:"clients"`
	ValueSize int    `json:"value_size"`
	Keys      int    `json:"keys"`
	Dist      string `json:"dist"` // "uniform", or "zipf(s)"
	// Filled is, for the fill workload, how many keys were written when
	// this row's slice of the fill ended (Ops of them in this slice).
	Filled int `json:"filled,omitempty"`
	// DiskBytes is, for the fill workload, the bytes of the nodes' files
	// when Filled keys were written.
	DiskBytes   int64   `json:"disk_bytes,omitempty"`
	Ops         uint64  `json:"ops"` // successful requests sent in the window
	OpsPerSec   float64 `json:"ops_per_sec"`
	P50         float64 `json:"p50_us"`
	P99         float64 `json:"p99_us"`
	P999        float64 `json:"p999_us"`
	CPUPerOp    float64 `json:"cpu_us_per_op"` // process user+sys CPU over the window / Ops; 0 if unknown
	Errors      uint64  `json:"errors"`
	Duration    float64 `json:"duration_s"`   // the measured window
	MaxSiblings int     `json:"max_siblings"` // most siblings one Get returned; 0 for put
	// UpdatesPerCommit is the mean number of storage writes that shared one
	// log append and fdatasync (group commit), over every node; 0 without
	// bbolt or without writes.
	UpdatesPerCommit float64 `json:"updates_per_commit"`
	// ReadRepairs is how many replicas Gets sent a merged state to, over
	// every node.
	ReadRepairs int64 `json:"read_repairs"`
	// CoalescedGets is how many Gets shared a quorum read with concurrent
	// Gets of the same key, over every node.
	CoalescedGets int64 `json:"coalesced_gets"`
	// PutP50 and PutP99 are the latencies of the mixed workload's puts
	// alone (0 for other workloads).
	PutP50 float64 `json:"put_p50_us,omitempty"`
	PutP99 float64 `json:"put_p99_us,omitempty"`
	// SchedP50 and SchedP99 are how long goroutines waited, runnable, for a
	// processor during the window (the runtime's /sched/latencies).
	SchedP50 float64 `json:"sched_p50_us"`
	SchedP99 float64 `json:"sched_p99_us"`

	firstErr error
}

// reporter prints results as they come: a table with a header, or JSON lines.
type reporter struct {
	w       io.Writer
	cfg     config
	started bool
}

func newReporter(w io.Writer, cfg config) *reporter { return &reporter{w: w, cfg: cfg} }

const rowFormat = "%-10s %9s %10s %9s %9s %10s %10s %7s %5s %11s\n"

func (r *reporter) print(res result) error {
	if r.cfg.json {
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(r.w, "%s\n", b)
		return err
	}
	if !r.started {
		r.started = true
		c := r.cfg
		fmt.Fprintf(r.w, "%d nodes (%s, tcp 127.0.0.1), N=%d R=%d W=%d; %d clients, %d B values, %d keys (%s), read ratio %.2f; %v per workload after %v warm-up\n",
			c.nodes, c.storage, c.n, c.r, c.w, c.clients, c.valueSize, c.keys, c.distName(), c.readRatio, c.duration, c.warmup)
		fmt.Fprintf(r.w, rowFormat, "workload", "ops", "ops/s", "p50 µs", "p99 µs", "p99.9 µs", "cpu µs/op", "errors", "sibs", "upd/commit")
	}
	name := res.Workload
	if res.Filled > 0 {
		name = fmt.Sprintf("fill %d%%", int(math.Round(100*float64(res.Filled)/float64(res.Keys))))
	}
	format := rowFormat
	if res.Filled > 0 {
		format = format[:len(format)-1] + fmt.Sprintf("  %.2f GiB on disk\n", float64(res.DiskBytes)/(1<<30))
	}
	_, err := fmt.Fprintf(r.w, format, name, fmt.Sprint(res.Ops), fmt.Sprintf("%.0f", res.OpsPerSec),
		fmt.Sprintf("%.1f", res.P50), fmt.Sprintf("%.1f", res.P99), fmt.Sprintf("%.1f", res.P999),
		fmt.Sprintf("%.1f", res.CPUPerOp), fmt.Sprint(res.Errors), fmt.Sprint(res.MaxSiblings), fmt.Sprintf("%.1f", res.UpdatesPerCommit))
	return err
}
