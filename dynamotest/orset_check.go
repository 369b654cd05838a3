// orset_check.go: the OR-set workload's checker: acknowledged adds stay unless a remove observed them, acknowledged removes hold unless the element was added again unobserved (§6.1, TESTING §1 promises 2-3).
package dynamotest

import (
	"fmt"
	"slices"
	"time"
)

// checkSets builds the Report of an OR-set run (SimConfig.ORSet) from the
// history and the final reads (by node, then key):
//
//   - lost: an acknowledged add of e is in the final state, and in every
//     later read that surely saw it, unless some remove attempt of e (acked
//     or not: a failed write may have been stored) read the key after the
//     add's acknowledged attempt was made, so it may have observed it;
//   - resurrected: an element an acknowledged remove took out is not in the
//     final state, nor in a later read that surely saw the remove, unless
//     some attempt to add it (acked or not) may have escaped the remove's
//     read: one it did not surely see (see seenBy), such as a concurrent or
//     later add.
//
// Deletes counts the acknowledged removes, CheckedDeletes those held to the
// second rule (all of them when R+W > N, except those whose read began
// before a disk was lost).
func (s *sim) checkSets(final [][]readResult, converged bool, convergeDur time.Duration) Report {
	rep := s.newReport(converged, convergeDur)
	rep.Mode = "orset"
	report := (&details{rep: &rep}).add
	present := finalPresent(s.keys, final)

	for _, o := range s.ops {
		if o.kind != opSetAdd && o.kind != opSetReAdd {
			if o.kind == opSetRemove && o.acked() {
				rep.Deletes++
			}
			continue
		}
		if !tallyAdd(&rep, o, present) {
			continue
		}
		added := o.set.attempts[len(o.set.attempts)-1].at
		if !s.removedAfter(o.key, o.elem, added, s.now()) {
			rep.CheckedAcked++
			if !present[o.key][o.elem] {
				rep.Lost++
				report(true, "lost", "element %d of key %d, acknowledged by %v, is not in the final state", o.elem, o.key, o)
				continue
			}
		}
		for _, q := range s.ops {
			if q.key == o.key && q.kind == opSetRead && q.getOK && s.seenBy(o, true, q) &&
				!slices.Contains(q.set.observed, o.elem) && !s.removedAfter(o.key, o.elem, added, q.end) {
				rep.Lost++
				report(true, "lost", "element %d of key %d, acknowledged by %v, was not read by %v", o.elem, o.key, o, q)
				break
			}
		}
	}

	if s.cfg.R+s.cfg.W > s.cfg.N {
		for _, r := range s.ops {
			if r.kind != opSetRemove || !r.acked() || s.amnesiaSince(r.start) {
				continue
			}
			last := r.set.attempts[len(r.set.attempts)-1]
			if !last.removed {
				continue
			}
			rep.CheckedDeletes++
			if how := s.undone(r, last.elem, present); how != "" {
				rep.Resurrected++
				report(true, "resurrected", "element %d of key %d, removed by %v, %s", last.elem, r.key, r, how)
			}
		}
	}

	for _, o := range s.ops {
		fmt.Fprintf(s.trace, "%d %d %d %t %v\n", o.id, o.start, o.end, o.acked(), o.set.observed)
		for _, a := range o.set.attempts {
			fmt.Fprintf(s.trace, " %d %v %d %t\n", a.at, a.observed, a.elem, a.removed)
		}
	}
	s.seal(&rep, report, final, converged, convergeDur)
	return rep
}

// removedAfter reports whether an attempt to remove e from key k read the
// key at or after from (so it may have observed an add made at from) and
// before until (so its write may have been applied by then).
func (s *sim) removedAfter(k int, e int64, from, until time.Duration) bool {
	for _, r := range s.ops {
		if r.key != k || r.kind != opSetRemove {
			continue
		}
		for _, a := range r.set.attempts {
			if a.removed && a.elem == e && a.at >= from && a.at < until {
				return true
			}
		}
	}
	return false
}

// undone describes how the element e that the acknowledged remove r took
// out came back, or returns "": it is in the final state, or a read that
// surely saw r's write read it, and no add of e escaped r (escapedAdd) before
// that read.
func (s *sim) undone(r *op, e int64, present []map[int64]bool) string {
	if present[r.key][e] && !s.escapedAdd(r, e, s.now()) {
		return "is in the final state"
	}
	for _, q := range s.ops {
		if q.key == r.key && q.kind == opSetRead && q.getOK && q.start > r.end && s.tombstoneSeen(r, q) &&
			slices.Contains(q.set.observed, e) && !s.escapedAdd(r, e, q.end) {
			return fmt.Sprintf("was read by %v", q)
		}
	}
	return ""
}

// escapedAdd reports whether some attempt to add e to r's key, made before
// until, may have escaped the read of the remove r: r did not surely see it.
func (s *sim) escapedAdd(r *op, e int64, until time.Duration) bool {
	for _, o := range s.ops {
		if o.key != r.key || o.elem != e || (o.kind != opSetAdd && o.kind != opSetReAdd) {
			continue
		}
		for i, a := range o.set.attempts {
			if a.at < until && !s.seenBy(o, o.acked() && i == len(o.set.attempts)-1, r) {
				return true
			}
		}
	}
	return false
}
