// peers_test.go: §4.6 the node's own failure detector: backoff, probing,
// and verdicts that do not depend on the order of same-instant events.
package dynamo

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPeerHealth_BackoffDoublesToItsCapAndAnAnswerClears(t *testing.T) {
	var h peerHealth
	t0 := time.Unix(1000, 0)
	base := 100 * time.Millisecond
	now := t0
	var delays []time.Duration
	for range 7 {
		h.failed("b", now, base)
		now = now.Add(time.Nanosecond)
		require.True(t, h.suspect("b", now), "down after an unanswered call")
		d := h.down["b"]
		delays = append(delays, d.delay)
		now = d.until // the backoff passed: the next call probes the peer
		require.False(t, h.suspect("b", now), "probed again once the backoff passed")
	}
	require.Equal(t, []time.Duration{base, 2 * base, 4 * base, 8 * base, 16 * base, 16 * base, 16 * base}, delays)
	for _, d := range delays {
		require.Positive(t, d)
	}
	started := now
	now = now.Add(time.Millisecond)
	h.failed("b", now, base)
	h.ok("b", started, now.Add(time.Millisecond)) // began before the verdict: clears nothing
	require.True(t, h.suspect("b", now.Add(2*time.Millisecond)))
	h.ok("b", now.Add(time.Millisecond), now.Add(3*time.Millisecond))
	require.False(t, h.suspect("b", now.Add(4*time.Millisecond)), "an answer to a call begun after the verdict clears it")
}

// Whatever order concurrent goroutines record what they saw at one instant
// in, the verdict from the next instant on is the same.
func TestPeerHealth_SameInstantEventsInAnyOrder(t *testing.T) {
	t0 := time.Unix(1000, 0)
	base := 100 * time.Millisecond
	events := []func(h *peerHealth){
		func(h *peerHealth) { h.failed("b", t0, base) },
		func(h *peerHealth) { h.ok("b", t0.Add(-time.Millisecond), t0) },
		func(h *peerHealth) { h.failed("c", t0, base) },
		func(h *peerHealth) { h.ok("c", t0.Add(-2*time.Millisecond), t0) },
		func(h *peerHealth) {
			h.membershipChanged([]Member{{ID: "b"}, {ID: "c"}}, func(id string) bool { return id != "c" }, t0)
		},
	}
	verdict := func(order []int) [2]bool {
		var h peerHealth
		h.failed("b", t0.Add(-time.Second), base) // an earlier verdict, long expired
		for _, i := range order {
			events[i](&h)
		}
		// At the instant itself nothing recorded at it shows yet.
		require.False(t, h.suspect("b", t0))
		next := t0.Add(time.Nanosecond)
		return [2]bool{h.suspect("b", next), h.suspect("c", next)}
	}
	want := verdict([]int{0, 1, 2, 3, 4})
	require.Equal(t, [2]bool{true, true}, want, "a failure at the instant outlives an answer to a call begun before it")
	perms := [][]int{{4, 3, 2, 1, 0}, {1, 0, 3, 2, 4}, {2, 4, 0, 3, 1}, {3, 1, 4, 0, 2}, {0, 2, 4, 1, 3}}
	for _, p := range perms {
		require.Equal(t, want, verdict(p), "order %v", p)
	}
}
