// tables.go: dynamoctl's human tables (text/tabwriter), one per command:
// status, members and ring (§4.2, §4.8), hints (§4.6) and stats.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/admin"
)

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// clean makes s safe to print: node IDs, addresses and error texts come
// from the network, and a control character could rewrite the terminal or
// break the table. A string with anything but printable runes is quoted.
func clean(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.QuoteToGraphic(s)
		}
	}
	if s == "" {
		return "-"
	}
	return s
}

func pct(n, of int) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}

// seconds formats a latency given in seconds.
func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Microsecond).String()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// nodeState is a member's state in one word.
func nodeState(reachable, membershipUp, suspected bool) string {
	switch {
	case reachable:
		return "UP"
	case membershipUp && suspected:
		return "SUSPECT"
	}
	return "DOWN"
}

func statusProblem(body []byte) (bool, error) {
	var s admin.Status
	if err := json.Unmarshal(body, &s); err != nil {
		return false, err
	}
	return !s.Healthy || !s.Ready, nil
}

func membersProblem(body []byte) (bool, error) {
	var ms []admin.Member
	if err := json.Unmarshal(body, &ms); err != nil {
		return false, err
	}
	return slices.ContainsFunc(ms, func(m admin.Member) bool { return !m.Reachable }), nil
}

func printStatus(c *client, w io.Writer) (bool, error) {
	var s admin.Status
	var v dynamo.RingView
	if err := c.getJSON("status", &s); err != nil {
		return false, err
	}
	if err := c.getJSON("ring", &v); err != nil {
		return false, err
	}
	health := "healthy"
	if !s.Healthy {
		health = "FAILED: " + clean(s.Fatal)
	}
	ready := "yes"
	if !s.Ready {
		ready = fmt.Sprintf("no (%d partitions to pull)", s.PendingTransfers)
	}
	t := newTable(w)
	fmt.Fprintf(t, "Node:\t%s (actor %s)\n", clean(s.Node), clean(s.Actor))
	fmt.Fprintf(t, "Health:\t%s\n", health)
	fmt.Fprintf(t, "Ready:\t%s\n", ready)
	fmt.Fprintf(t, "Ring:\t%d partitions, N=%d, fingerprint %s\n", s.Partitions, s.N, clean(s.Fingerprint))
	fmt.Fprintf(t, "Members:\t%d, %d reachable\n", s.Members, s.Reachable)
	fmt.Fprintf(t, "Hints held:\t%d (%d bytes)\n", s.HintsPending, s.HintBytes)
	if err := t.Flush(); err != nil {
		return false, err
	}
	fmt.Fprintln(w)
	if err := ringTable(w, v, true); err != nil {
		return false, err
	}
	fmt.Fprintln(w)
	t = newTable(w)
	fmt.Fprintln(t, "OP\tOUTCOME\tCOUNT\tMEAN\tP50\tP95\tP99")
	for _, l := range s.Latency {
		fmt.Fprintf(t, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", clean(l.Op), clean(l.Outcome), l.Count,
			seconds(l.MeanSeconds), seconds(l.P50Seconds), seconds(l.P95Seconds), seconds(l.P99Seconds))
	}
	return !s.Healthy || !s.Ready, t.Flush()
}

// ringTable prints one line per node: its state (withState) and the
// partitions it owns.
func ringTable(w io.Writer, v dynamo.RingView, withState bool) error {
	t := newTable(w)
	if withState {
		fmt.Fprint(t, "STATE\t")
	}
	fmt.Fprintln(t, "NODE\tADDRESS\tZONE\tFIRST\tFIRST%\tREPLICA\tREPLICA%")
	for _, n := range v.Nodes {
		if withState {
			fmt.Fprintf(t, "%s\t", nodeState(n.Reachable, n.MembershipUp, n.Suspected))
		}
		id := clean(n.ID)
		if n.Self {
			id += " *"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%d\t%s\t%d\t%s\n", id, clean(n.Addr), clean(n.Zone),
			n.First, pct(n.First, v.Partitions), n.Replica, pct(n.Replica, v.Partitions))
	}
	return t.Flush()
}

func printRing(c *client, w io.Writer) (bool, error) {
	var v dynamo.RingView
	if err := c.getJSON("ring", &v); err != nil {
		return false, err
	}
	fmt.Fprintf(w, "%d partitions, N=%d, fingerprint %s; * marks the node asked\n\n", v.Partitions, v.N, clean(v.Fingerprint))
	return false, ringTable(w, v, false)
}

func printMembers(c *client, w io.Writer) (bool, error) {
	var ms []admin.Member
	if err := c.getJSON("members", &ms); err != nil {
		return false, err
	}
	t := newTable(w)
	fmt.Fprintln(t, "NODE\tADDRESS\tZONE\tSTATE\tMEMBERSHIP\tOWN DETECTOR")
	problem := false
	for _, m := range ms {
		id := clean(m.ID)
		if m.Self {
			id += " *"
		}
		detector := "answers"
		if m.Suspected {
			detector = "unanswered calls"
		}
		membership := "up"
		if !m.MembershipUp {
			membership = "down"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\n", id, clean(m.Addr), clean(m.Zone),
			nodeState(m.Reachable, m.MembershipUp, m.Suspected), membership, detector)
		problem = problem || !m.Reachable
	}
	return problem, t.Flush()
}

func printHints(c *client, w io.Writer) (bool, error) {
	var h admin.Hints
	if err := c.getJSON("hints", &h); err != nil {
		return false, err
	}
	fmt.Fprintf(w, "%d hints held (%d bytes); since start: %d stored, %d delivered, %d refused, %d rehomed\n",
		h.Total, h.Bytes, h.Stored, h.Delivered, h.Refused, h.Rehomed)
	if len(h.Pending) == 0 {
		return false, nil
	}
	fmt.Fprintln(w)
	t := newTable(w)
	fmt.Fprintln(t, "OWNER\tHINTS")
	for _, o := range h.Pending {
		fmt.Fprintf(t, "%s\t%d\n", clean(o.Owner), o.Hints)
	}
	return false, t.Flush()
}

func printStats(c *client, w io.Writer) (bool, error) {
	var m dynamo.Metrics
	if err := c.getJSON("stats", &m); err != nil {
		return false, err
	}
	t := newTable(w)
	fmt.Fprintln(t, "OP\tOUTCOME\tCOUNT\tMEAN\tP99")
	for _, r := range m.Requests {
		fmt.Fprintf(t, "%s\t%s\t%d\t%s\t%s\n", clean(r.Op), clean(r.Outcome), r.Latency.Count,
			seconds(r.Latency.Mean()), seconds(min(r.Latency.Quantile(0.99), lastBound(r.Latency))))
	}
	if err := t.Flush(); err != nil {
		return false, err
	}
	if len(m.QuorumFailures) > 0 {
		fmt.Fprintln(w)
		t = newTable(w)
		fmt.Fprintln(t, "QUORUM FAILURES\tREASON\tCOUNT")
		for _, q := range m.QuorumFailures {
			fmt.Fprintf(t, "%s\t%s\t%d\n", clean(q.Op), clean(q.Reason), q.Count)
		}
		if err := t.Flush(); err != nil {
			return false, err
		}
	}
	fmt.Fprintln(w)
	t = newTable(w)
	fmt.Fprintln(t, "COUNTER\tVALUE")
	for _, kv := range counters(m) {
		fmt.Fprintf(t, "%s\t%s\n", kv[0], kv[1])
	}
	if err := t.Flush(); err != nil {
		return false, err
	}
	if len(m.AntiEntropy.Peers) > 0 {
		fmt.Fprintln(w)
		t = newTable(w)
		fmt.Fprintln(t, "ANTI-ENTROPY PEER\tAT\tTOOK\tPARTITIONS\tDIFFERING\tKEYS SENT\tKEYS RECEIVED\tERROR")
		for _, p := range m.AntiEntropy.Peers {
			fmt.Fprintf(t, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", clean(p.Peer), p.At.UTC().Format(time.RFC3339), p.Duration.Round(time.Microsecond),
				p.Result.Partitions, p.Result.DiffPartitions, p.Result.KeysSent, p.Result.KeysReceived, clean(p.Err))
		}
		return false, t.Flush()
	}
	return false, nil
}

func lastBound(h dynamo.Histogram) float64 {
	if len(h.Bounds) == 0 {
		return 0
	}
	return h.Bounds[len(h.Bounds)-1]
}

// counters flattens the scalar figures of m (stats, anti-entropy totals,
// membership, transport, storage, requests served) into sorted name/value
// pairs, named by their JSON paths: new fields show up without a change
// here.
func counters(m dynamo.Metrics) [][2]string {
	m.Requests, m.QuorumFailures, m.AntiEntropy.Peers, m.Stats.HotKeys = nil, nil, nil, nil
	b, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	var tree map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber() // counts print as integers, not 1.2e+06
	if err := d.Decode(&tree); err != nil {
		return nil
	}
	var out [][2]string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if _, ok := x["bounds"]; ok { // a histogram: its count and sum
				walk(prefix+".count", x["count"])
				walk(prefix+".sum", x["sum"])
				return
			}
			for k, e := range x {
				walk(strings.TrimPrefix(prefix+"."+k, "."), e)
			}
		case []any, nil:
		case string:
			out = append(out, [2]string{clean(prefix), clean(x)})
		case json.Number:
			out = append(out, [2]string{clean(prefix), x.String()})
		default:
			out = append(out, [2]string{clean(prefix), fmt.Sprint(x)})
		}
	}
	walk("", tree)
	slices.SortFunc(out, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return out
}
