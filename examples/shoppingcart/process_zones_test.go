// process_zones_test.go: a whole zone of OS processes SIGKILLed while clients write (issue 19, §4.6 across data centers): writes keep being acknowledged, and the zone's replicas come back.

package main

import (
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestProcesses_ZoneOutage runs six node processes in three zones (-zone),
// checks that every node sees every zone and places each key's three
// replicas in three zones, SIGKILLs both nodes of one zone, and writes
// through the other four: once the failure detector holds the zone down,
// every write must be acknowledged at W=2 (each key keeps two primaries up).
// It restarts the zone on its data directories and requires every
// acknowledged write to read back at R=3 from all six nodes.
func TestProcesses_ZoneOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: starts OS processes")
	}
	exe, w := processTest(t)
	zoneOf := map[string]string{
		"node-a1": "zone-a", "node-a2": "zone-a",
		"node-b1": "zone-b", "node-b2": "zone-b",
		"node-c1": "zone-c", "node-c2": "zone-c",
	}
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range zoneOf {
			if !yield(id) {
				return
			}
		}
	})
	dirs := map[string]string{}
	procs := map[string]*proc{}
	var seed string
	for _, id := range ids {
		dirs[id] = t.TempDir()
		procs[id] = startProc(t, exe, id, dirs[id], seed, "-zone", zoneOf[id])
		seed = procs[ids[0]].gossip
	}
	all := func() []*proc {
		var out []*proc
		for _, id := range ids {
			out = append(out, procs[id])
		}
		return out
	}
	view := map[string]bool{}
	for _, id := range ids {
		view[id] = true
	}
	w.waitView(all(), view)
	for _, m := range w.health(procs["node-a1"]).Members {
		require.Equal(t, zoneOf[m.ID], m.Zone, "node-a1 sees %s's zone", m.ID)
	}
	for k := range 20 {
		var rep prefReply
		require.True(t, w.getJSON(procs[ids[k%len(ids)]], fmt.Sprintf("/pref/zkey-%d", k), &rep))
		require.ElementsMatch(t, []string{"zone-a", "zone-b", "zone-c"}, rep.Zones, "zkey-%d: %v", k, rep.IDs)
	}
	for _, p := range all() {
		require.True(t, w.write(p), "healthy write through %s", p.id)
	}

	// The whole of zone-c goes down.
	survivors := []*proc{procs["node-a1"], procs["node-a2"], procs["node-b1"], procs["node-b2"]}
	procs["node-c1"].kill()
	procs["node-c2"].kill()
	killed := time.Now()
	view["node-c1"], view["node-c2"] = false, false
	deadline := time.Now().Add(procTimeout)
	for i := 0; ; i++ {
		require.True(t, time.Now().Before(deadline) && i < maxOutageWrites, "the survivors never reported zone-c unreachable")
		w.write(survivors[i%len(survivors)]) // may fail while zone-c is believed up
		if i >= 3 && slices.IndexFunc(survivors, func(p *proc) bool { return w.sees(p, "node-c1") || w.sees(p, "node-c2") }) < 0 {
			break
		}
	}
	t.Logf("zone-c held down by every survivor %v after the kill", time.Since(killed).Round(time.Millisecond))
	const outageWrites = 12
	for i := range outageWrites {
		p := survivors[i%len(survivors)]
		require.True(t, w.write(p), "write %d through %s with zone-c down", i, p.id)
	}

	for _, id := range []string{"node-c1", "node-c2"} {
		procs[id] = startProc(t, exe, id, dirs[id], seed, "-zone", zoneOf[id])
	}
	t.Logf("zone-c restarted on its data directories %v after the kill", time.Since(killed).Round(time.Millisecond))
	start := time.Now()
	w.waitConverged(all(), 3)
	var hints int64
	for _, p := range all() {
		hints += w.health(p).Stats.Hints.Delivered
	}
	t.Logf("writes=%d acked=%d (%d in a row with zone-c down) converge_ms=%d hints_delivered=%d",
		w.n, len(w.kv), outageWrites, time.Since(start).Milliseconds(), hints)
	require.Positive(t, hints, "hinted handoff brought zone-c's writes home")

	for _, p := range all() {
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	}
	for _, p := range all() {
		p.waitExit0()
	}
}
