// checker.go: the checker: lost, unacknowledged-but-present and resurrected elements, siblings and convergence (TESTING §1 promises 2-4).
package dynamotest

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// maxDetails bounds the violations and notes listed per kind.
const maxDetails = 5

// check builds the Report from the history and the final reads (by node,
// then key).
func (s *sim) check(final [][]readResult, converged bool, convergeDur time.Duration) Report {
	if s.cfg.ORSet {
		return s.checkSets(final, converged, convergeDur)
	}
	rep := s.newReport(converged, convergeDur)
	strict := s.cfg.Mode == ModeUnion
	report := (&details{rep: &rep}).add
	present := finalPresent(s.keys, final)
	// Elements some Delete's read saw may be gone: that Delete may have
	// been applied, even if it was not acknowledged.
	deletable := map[int64]bool{}
	for _, o := range s.ops {
		if o.kind == opDelete && o.getOK {
			for _, e := range o.observed {
				deletable[e] = true
			}
		}
	}

	rep.Losses = s.losses
	for _, nd := range s.nodes {
		if nd.st != nil {
			s.addStats(nd.st.Stats())
		}
	}
	rep.CorruptRecords, rep.DotConflicts = s.storeStats.CorruptRecords, s.storeStats.DotConflicts
	rep.EntriesFolded = s.storeStats.EntriesFolded
	for _, o := range s.ops {
		if o.corrupt != nil {
			report(true, "corrupt", "%v: %v", o, o.corrupt)
		}
		rep.Tampered += o.tampered
		rep.MaxContextBytes = max(rep.MaxContextBytes, o.ctxBytes)
		if o.forged > 0 {
			report(true, "forged-context", "%v: an edited context was not refused with ErrBadContext", o)
		}
		if o.getOK {
			rep.MaxSiblings = max(rep.MaxSiblings, o.siblings-s.blindSiblings(o))
		}
		switch o.kind {
		case opAdd:
			if !tallyAdd(&rep, o, present) {
				continue
			}
			if deletable[o.elem] {
				continue
			}
			rep.CheckedAcked++
			if !present[o.key][o.elem] {
				rep.Lost++
				report(strict, "lost", "element %d of key %d, acknowledged by %v", o.elem, o.key, o)
			}
		case opDelete:
			if o.acked() {
				rep.Deletes++
			}
		}
	}
	res, checked := s.resurrected(present)
	rep.CheckedDeletes = checked
	for _, r := range res {
		rep.Resurrected++
		report(strict, "resurrected", "%s", r)
	}
	for _, o := range s.ops {
		if !o.getOK || o.siblings < 2 {
			continue
		}
		ws, dup := s.writers(o)
		if dup != "" {
			report(true, "duplicate-siblings", "%v: %s; the siblings were written by %s", o, dup, ws)
		} else if o.siblings-s.blindSiblings(o) > s.cfg.Clients {
			// Each client's acknowledged writes are causally ordered when its
			// next read overlaps them (R+W > N): then siblings never outnumber
			// the clients. Failed attempts, and reads that miss hinted writes,
			// add writes that are truly concurrent with their client's next.
			report(s.cfg.R+s.cfg.W > s.cfg.N && s.ackedOnly(o),
				"siblings", "%v: more siblings than the %d clients; they were written by %s", o, s.cfg.Clients, ws)
		}
	}
	for _, o := range s.ops {
		fmt.Fprintf(s.trace, "%d %d %d %t %d %v %d\n", o.id, o.start, o.end, o.acked(), len(o.attempts), o.observed, o.siblings)
	}
	s.seal(&rep, report, final, converged, convergeDur)
	return rep
}

// newReport starts a Report with the run's settings and outcome.
func (s *sim) newReport(converged bool, convergeDur time.Duration) Report {
	return Report{
		Seed:                 s.cfg.Seed,
		Mode:                 s.cfg.Mode.String(),
		Broken:               s.cfg.Broken.String(),
		Clients:              s.cfg.Clients,
		Ops:                  len(s.ops),
		Faults:               s.faultCount,
		Converged:            converged,
		ConvergeMS:           convergeDur.Milliseconds(),
		MaxConcurrentWriters: s.maxInflight,
	}
}

// details lists violations and notes in a Report, at most maxDetails of
// each kind.
type details struct {
	rep    *Report
	counts map[string]int
}

func (d *details) add(violation bool, kind, format string, args ...any) {
	if d.counts == nil {
		d.counts = map[string]int{}
	}
	d.counts[kind]++
	if d.counts[kind] > maxDetails {
		return
	}
	msg := kind + ": " + fmt.Sprintf(format, args...)
	if violation {
		d.rep.Violations = append(d.rep.Violations, msg)
	} else {
		d.rep.Notes = append(d.rep.Notes, msg)
	}
}

// tallyAdd counts the add o in rep: acknowledged, or not and present in the
// final state anyway. It reports whether o was acknowledged.
func tallyAdd(rep *Report, o *op, present []map[int64]bool) bool {
	if !o.acked() {
		rep.Unacked++
		if present[o.key][o.elem] {
			rep.UnackedPresent++
		}
		return false
	}
	rep.Acked++
	return true
}

// finalPresent returns the final state of each key: what any node read
// (they agree once converged).
func finalPresent(keys [][]byte, final [][]readResult) []map[int64]bool {
	present := make([]map[int64]bool, len(keys))
	for k := range keys {
		present[k] = map[int64]bool{}
		for i := range final {
			for _, e := range final[i][k].set {
				present[k][e] = true
			}
		}
	}
	return present
}

// seal reports a failure to converge, and adds the final reads to the
// trace and its hash to rep as the Fingerprint.
func (s *sim) seal(rep *Report, report func(bool, string, string, ...any), final [][]readResult, converged bool, convergeDur time.Duration) {
	if !converged {
		report(true, "convergence", "replicas did not converge within %d rounds (%v of fake time)", maxConvergeRounds, convergeDur)
	}
	for i := range final {
		for k := range final[i] {
			fmt.Fprintf(s.trace, "%v %s\n", final[i][k].set, final[i][k].ctx)
		}
	}
	fmt.Fprintf(s.trace, "%d\n", rep.ConvergeMS)
	rep.Fingerprint = fmt.Sprintf("%016x", s.trace.Sum64())
}

// resurrected returns a description of each element that came back after an
// acknowledged Delete covered it: the Delete's read saw the element, and it
// is in the final state or a later read saw it, though every write attempt
// that carried it was surely seen by the Delete's read (so its tombstone
// covers them all). It also returns how many Deletes it checked: every
// acknowledged one, when R+W > N, except those whose read began before a disk
// was lost (the lost disk may have held what they covered).
//
// An attempt carrying the element escapes the Delete when the Delete's read
// may have missed it (see seenBy): it failed, overlapped the Delete, or ran
// while a sloppy quorum could hide it. A later attempt or read carrying the
// element is evidence of resurrection only if the tombstone was surely visible
// to it (see tombstoneSeen); otherwise it too is an escape.
func (s *sim) resurrected(present []map[int64]bool) (out []string, checked int) {
	if s.cfg.R+s.cfg.W <= s.cfg.N {
		return nil, 0
	}
	seen := map[int64]bool{}
	for _, d := range s.ops {
		if d.kind != opDelete || !d.getOK || !d.acked() || s.amnesiaSince(d.start) {
			continue
		}
		checked++
		for _, e := range d.observed {
			if seen[e] {
				continue
			}
			how := ""
			if present[d.key][e] {
				how = "is in the final state"
			} else if r := s.readAfter(d, e); r != nil {
				how = fmt.Sprintf("was read by %v", r)
			}
			if how == "" || s.escaped(d, e) {
				continue
			}
			seen[e] = true
			out = append(out, fmt.Sprintf("element %d of key %d, deleted by %v, %s", e, d.key, d, how))
		}
	}
	return out, checked
}

// readAfter returns a read that began after d returned, to which d's
// tombstone was surely visible, and that saw e; or nil.
func (s *sim) readAfter(d *op, e int64) *op {
	for _, o := range s.ops {
		if o.key == d.key && o.kind != opAdd && o.start > d.end && s.tombstoneSeen(d, o) && slices.Contains(o.observed, e) {
			return o
		}
	}
	return nil
}

// escaped reports whether some write attempt carrying e may have escaped d's
// tombstone.
func (s *sim) escaped(d *op, e int64) bool {
	for _, o := range s.ops {
		if o.key != d.key || o.kind != opAdd {
			continue
		}
		for i, a := range o.attempts {
			if !slices.Contains(a.set, e) {
				continue
			}
			if o.start > d.end {
				if !s.tombstoneSeen(d, o) {
					return true // its read may have missed the tombstone
				}
				continue // it saw the tombstone, yet carried e: that is the resurrection
			}
			if !s.seenBy(o, o.acked() && i == len(o.attempts)-1, d) {
				return true
			}
		}
	}
	return false
}

// seenBy reports whether d's read surely saw an attempt of o (acked: the
// attempt was acknowledged). Either the replicas synced between o's end and
// d's start, so every primary held the attempt's version (if it was stored
// anywhere) and d read at least one primary; or o was acknowledged before d
// began and R+W > N held between them: always with strict quorums, and with a
// sloppy quorum when o ran in an earlier step than d and d's step was quiet
// (every node up and every hint delivered, so o's version was on W primaries
// and d read R primaries). No disk may be lost in between.
func (s *sim) seenBy(o *op, acked bool, d *op) bool {
	if o.end >= d.start || s.amnesiaBetween(o.end, d.start) {
		return false
	}
	if s.syncedBetween(o.end, d.start) && s.readsPrimary(d) {
		return true
	}
	return acked && (s.cfg.PrimariesOnly || (o.step < d.step && s.steps[d.step].quiet))
}

// tombstoneSeen reports whether the read of o, which began after d returned,
// surely saw d's tombstone (or its purge, which left nothing to see): with
// strict quorums always (resurrected skips Deletes followed by a disk loss);
// with a sloppy quorum when the replicas synced between d's end and o's start
// and o read a primary, or when o ran in a later step and every step from
// d's to o's was quiet, so that the tombstone stayed on W primaries and o read
// R primaries.
func (s *sim) tombstoneSeen(d, o *op) bool {
	if s.cfg.PrimariesOnly || (s.syncedBetween(d.end, o.start) && s.readsPrimary(o)) {
		return true
	}
	if o.step <= d.step {
		return false
	}
	for k := d.step; k <= o.step; k++ {
		if !s.steps[k].quiet {
			return false
		}
	}
	return true
}

// syncedBetween reports whether a client step that began in (from, to) found
// every primary of every key holding the same bytes, with every node up and
// no hint pending.
func (s *sim) syncedBetween(from, to time.Duration) bool {
	return slices.ContainsFunc(s.steps, func(st stepInfo) bool { return st.synced && st.at > from && st.at < to })
}

// readsPrimary reports whether o's read surely reached a primary of its key:
// a sloppy read goes to the first N reachable nodes of the preference list,
// and fewer than R of them are fallbacks when fewer than R nodes are down and
// no node suspects a running one (stepInfo.trusted).
func (s *sim) readsPrimary(o *op) bool {
	return s.cfg.PrimariesOnly || (s.steps[o.step].down < s.cfg.R && s.steps[o.step].trusted)
}

// amnesiaSince reports whether a disk was lost at or after t.
func (s *sim) amnesiaSince(t time.Duration) bool {
	return slices.ContainsFunc(s.amnesiaAt, func(a time.Duration) bool { return a >= t })
}

// amnesiaBetween reports whether a disk was lost in [from, to].
func (s *sim) amnesiaBetween(from, to time.Duration) bool {
	return slices.ContainsFunc(s.amnesiaAt, func(a time.Duration) bool { return a >= from && a <= to })
}

// writers names the write attempts that wrote each of a read's siblings (an
// attempt's Modify tried to Put exactly that set), and describes the first
// impossible sibling, if any: a set no attempt wrote, or more siblings with
// one set than attempts that wrote it (one write became two siblings).
func (s *sim) writers(r *op) (names, impossible string) {
	type writer struct {
		o *op
		i int
	}
	var b strings.Builder
	counted := map[string]bool{}
	for n, set := range r.sibSets {
		var ws []writer
		for _, o := range s.ops {
			for i, a := range o.attempts {
				if o.key == r.key && o.start < r.end && slices.Equal(a.set, set) {
					ws = append(ws, writer{o, i})
				}
			}
		}
		if n > 0 {
			b.WriteString("; ")
		}
		if len(ws) == 0 {
			fmt.Fprintf(&b, "a set of %d elements no attempt wrote", len(set))
			if impossible == "" {
				impossible = fmt.Sprintf("sibling %d holds a set of %d elements that no write attempt wrote", n, len(set))
			}
			continue
		}
		for j, w := range ws {
			if j > 0 {
				b.WriteString(" or ")
			}
			fmt.Fprintf(&b, "op %d (c%d, attempt %d of %d, acked %t)", w.o.id, w.o.client, w.i+1, len(w.o.attempts), w.o.acked() && w.i == len(w.o.attempts)-1)
		}
		key := fmt.Sprint(set)
		if counted[key] {
			continue
		}
		counted[key] = true
		same := 0
		for _, other := range r.sibSets {
			if slices.Equal(other, set) {
				same++
			}
		}
		if same > len(ws) && impossible == "" {
			impossible = fmt.Sprintf("%d siblings hold one set that only %d write attempt(s) wrote: one write became several siblings", same, len(ws))
		}
	}
	return b.String(), impossible
}

// ackedOnly reports whether every sibling of r has a set that only
// acknowledged final attempts wrote.
func (s *sim) ackedOnly(r *op) bool {
	for _, set := range r.sibSets {
		for _, o := range s.ops {
			for i, a := range o.attempts {
				if o.key == r.key && slices.Equal(a.set, set) && !(o.acked() && i == len(o.attempts)-1) {
					return false
				}
			}
		}
	}
	return true
}
