// process_handoff_test.go: §4.6 sloppy quorum and durable hinted handoff on real OS processes: the fallback holding a hint is SIGKILLed before it can deliver, restarts on its data directory, and still delivers the hint once the owner returns.

package main

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// handoffKeys is how many keys are written while their third replica is
// down; all of them share the same replicas and the same fallback.
const handoffKeys = 5

// maxKeyProbes bounds the candidate keys tried to find handoffKeys keys.
const maxKeyProbes = 400

// TestProcesses_HintedHandoff_FallbackCrash runs 4 node processes (N=3,
// W=2) on 127.0.0.1. For keys whose replicas are P1, P2, P3 and whose first
// fallback is F, it SIGKILLs P3, writes the keys through P1 (acknowledged by
// P1 and P2; F takes a hint for P3), then SIGKILLs F before P3 is back, so no
// delivery can happen, and restarts F on its data directory: the hints must
// have survived the crash. Then P3 restarts on its data directory, and the
// restarted F must deliver every hint to it and drop them. Finally every
// primary must hold every acknowledged value, and every node must read it
// back at R=3.
func TestProcesses_HintedHandoff_FallbackCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: starts OS processes")
	}
	exe, w := processTest(t)

	begin := time.Now()
	ids := []string{"node-a", "node-b", "node-c", "node-d"}
	dirs := map[string]string{}
	procs := map[string]*proc{}
	for _, id := range ids {
		dirs[id] = t.TempDir()
		seed := ""
		if id != ids[0] {
			seed = procs[ids[0]].gossip
		}
		procs[id] = startProc(t, exe, id, dirs[id], seed)
	}
	running := func(ids ...string) []*proc {
		out := make([]*proc, 0, len(ids))
		for _, id := range ids {
			out = append(out, procs[id])
		}
		return out
	}
	allUp := map[string]bool{}
	for _, id := range ids {
		allUp[id] = true
	}
	w.waitView(running(ids...), allUp)
	t.Logf("4 processes up and seeing each other after %v", time.Since(begin).Round(time.Millisecond))

	// Roles come from the first key's preference list, which every node
	// must compute alike; the other keys have the same fallback, so the same
	// three replicas (there are only 4 nodes), and P1 is a replica of each.
	// A node's ring follows its member view asynchronously, so wait until
	// every ring holds all four nodes and they agree.
	first := "handoff-0"
	var pref []string
	w.poll("every node's preference list of "+first+" holds all 4 nodes alike", func() string {
		pref = w.pref(procs[ids[0]], first, len(ids))
		if len(pref) != len(ids) {
			return fmt.Sprintf("%s: %v", ids[0], pref)
		}
		for _, id := range ids[1:] {
			if got := w.pref(procs[id], first, len(ids)); !slices.Equal(got, pref) {
				return fmt.Sprintf("%s: %v, %s: %v", ids[0], pref, id, got)
			}
		}
		return ""
	})
	p1, p2, p3, f := pref[0], pref[1], pref[2], pref[3]
	keys := []string{first}
	for i := 1; len(keys) < handoffKeys; i++ {
		require.Less(t, i, maxKeyProbes, "no %d keys with fallback %s among %d candidates", handoffKeys, f, maxKeyProbes)
		k := fmt.Sprintf("handoff-%d", i)
		if kp := w.pref(procs[p1], k, len(ids)); kp[len(kp)-1] == f {
			keys = append(keys, k)
		}
	}
	t.Logf("keys %v: replicas %s, %s, %s; fallback %s", keys, p1, p2, p3, f)

	// P3 crashes; P1 must see it unreachable (failure is not departure: it
	// stays a member).
	procs[p3].kill()
	p3Killed := time.Now()
	w.waitUnreachable(p3, procs[p1])
	p3Down := time.Since(p3Killed)
	t.Logf("%s holds %s unreachable %v after the SIGKILL", p1, p3, p3Down.Round(time.Millisecond))

	for _, k := range keys {
		v := "value-of-" + k
		status, body, err := w.do(procs[p1], http.MethodPut, "/kv/"+k+"?w=2", []byte(v))
		require.NoError(t, err, "PUT %s through %s", k, p1)
		require.Equal(t, http.StatusNoContent, status, "PUT %s through %s with %s down: %s", k, p1, p3, body)
		w.kv[k] = v
	}

	// The hint write to F may finish just after the acknowledgement.
	w.poll(fmt.Sprintf("%s holds %d hints for %s", f, len(keys), p3), func() string {
		if h := w.health(procs[f]).Stats.Hints; h.Pending[p3] != len(keys) {
			return fmt.Sprintf("%s hint stats %+v", f, h)
		}
		return ""
	})
	w.requireLocal(procs[f], "holds as hints")

	// F crashes before P3 returns: nothing can have been delivered. P1 and
	// P2 must hold it dead before it rejoins under its ID on new ports.
	procs[f].kill()
	fKilled := time.Now()
	w.waitUnreachable(f, procs[p1], procs[p2])
	t.Logf("%s and %s hold %s unreachable %v after the SIGKILL", p1, p2, f, time.Since(fKilled).Round(time.Millisecond))

	procs[f] = startProc(t, exe, f, dirs[f], procs[p1].gossip)
	w.poll(fmt.Sprintf("restarted %s holds its %d hints for %s, and sees %s as a member, unreachable", f, len(keys), p3, p3), func() string {
		h := w.health(procs[f])
		if got := h.Stats.Hints.Pending[p3]; got != len(keys) {
			return fmt.Sprintf("%s holds %d hints for %s (stats %+v)", f, got, p3, h.Stats.Hints)
		}
		if reachable, member := w.view(procs[f])[p3]; !member || reachable {
			return fmt.Sprintf("%s sees %v", f, w.view(procs[f]))
		}
		return ""
	})
	require.Zero(t, w.health(procs[f]).Stats.Hints.Delivered, "%s delivered hints while %s was down", f, p3)
	w.requireLocal(procs[f], "still holds as hints after its restart")
	t.Logf("%s restarted on its data directory with its %d hints for %s, %v after its SIGKILL", f, len(keys), p3, time.Since(fKilled).Round(time.Millisecond))

	// P3 returns: the restarted F delivers every hint, counted as delivered
	// by F (P3 may also get the values by transfer from P1 and P2, so P3
	// holding them alone would prove nothing), and drops them.
	p3Start := time.Now()
	procs[p3] = startProc(t, exe, p3, dirs[p3], procs[p1].gossip)
	p3Back := time.Now()
	w.poll(fmt.Sprintf("%s delivers its %d hints to the restarted %s", f, len(keys), p3), func() string {
		h := w.health(procs[f]).Stats.Hints
		if h.Pending[p3] != 0 || h.Delivered < int64(len(keys)) {
			return fmt.Sprintf("%s hint stats %+v", f, h)
		}
		return ""
	})
	delivered := time.Since(p3Back)
	t.Logf("%s delivered its hints %v after %s was ready again (%v after its restart began)",
		f, delivered.Round(time.Millisecond), p3, time.Since(p3Start).Round(time.Millisecond))
	for _, k := range keys {
		require.Empty(t, w.local(procs[f], k), "%s still holds %s after delivering its hint", f, k)
	}

	// Nothing acknowledged is lost: each replica holds each value, and
	// every node reads it back at R=3.
	for _, id := range []string{p1, p2, p3} {
		w.requireLocal(procs[id], "holds as a replica")
	}
	w.waitView(running(ids...), allUp)
	w.waitConverged(running(ids...), 3)
	t.Logf("kill_to_unreachable_ms=%d p3_ready_to_hints_delivered_ms=%d keys=%d lost=0 total=%v",
		p3Down.Milliseconds(), delivered.Milliseconds(), len(keys), time.Since(begin).Round(time.Millisecond))
}

// pref returns the first n node IDs of key's preference list in p's ring.
func (w *workload) pref(p *proc, key string, n int) []string {
	w.t.Helper()
	var rep prefReply
	require.True(w.t, w.getJSON(p, fmt.Sprintf("/pref/%s?n=%d", url.PathEscape(key), n), &rep), "GET /pref/%s on %s", key, p.id)
	return rep.IDs
}

// local returns the values p alone holds for key, in its replica and its
// hints.
func (w *workload) local(p *proc, key string) []string {
	w.t.Helper()
	var rep localReply
	require.True(w.t, w.getJSON(p, "/local/"+url.PathEscape(key), &rep), "GET /local/%s on %s", key, p.id)
	out := make([]string, 0, len(rep.Siblings))
	for _, v := range rep.Siblings {
		out = append(out, string(v))
	}
	return out
}

// requireLocal requires p alone to hold every acknowledged value.
func (w *workload) requireLocal(p *proc, how string) {
	w.t.Helper()
	for k, v := range w.kv {
		require.True(w.t, slices.Contains(w.local(p, k), v), "%s %s: %s lacks %q", p.id, how, k, v)
	}
}

// view returns p's ring: each member's ID and whether p holds it reachable.
func (w *workload) view(p *proc) map[string]bool {
	w.t.Helper()
	out := map[string]bool{}
	for _, m := range w.health(p).Members {
		out[m.ID] = m.Reachable
	}
	return out
}

// waitUnreachable polls until every one of procs holds id unreachable while
// keeping it a member.
func (w *workload) waitUnreachable(id string, procs ...*proc) {
	w.t.Helper()
	w.poll(id+" unreachable, still a member", func() string {
		for _, p := range procs {
			if reachable, member := w.view(p)[id]; !member || reachable {
				return fmt.Sprintf("%s sees %v", p.id, w.view(p))
			}
		}
		return ""
	})
}
