// checker.go: the workload's history and the checker that holds the final,
// converged state against it (TESTING §3, the checker's report).

package main

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// addRec is one attempted add of a unique element.
type addRec struct {
	Key        string
	Elem       int64
	Start, End time.Time
	Acked      bool
	Writer     int64   // the write's marker (acked only)
	Superseded []int64 // writers of the versions its read saw (acked only)
	Err        string  // why it was not acknowledged
}

// delOutcome is what the client learned of a delete.
type delOutcome int

const (
	delUnknown    delOutcome = iota // no answer: it may or may not have been written
	delNotWritten                   // its Get failed: no tombstone was written
	delFailed                       // its Delete failed: the tombstone may still have been stored
	delAcked                        // acknowledged at W
)

func (o delOutcome) String() string {
	return [...]string{"unknown", "not written", "failed", "acked"}[o]
}

// delRec is one delete of a whole key: what its Get saw, which its
// tombstone covers.
type delRec struct {
	Key        string
	Start, End time.Time
	Outcome    delOutcome
	Elems      []int64 // elements of the siblings the Get returned
	Writers    []int64 // writers of those siblings
}

// recorder collects the history; it is safe for concurrent use.
type recorder struct {
	nextElem    atomic.Int64
	maxSiblings atomic.Int64
	maxContext  atomic.Int64 // largest context (text bytes) a read returned

	mu   sync.Mutex
	adds []addRec
	dels []delRec
}

func (r *recorder) add(a addRec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.adds = append(r.adds, a)
}

func (r *recorder) del(d delRec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dels = append(r.dels, d)
}

func (r *recorder) sawSiblings(n int) { storeMax(&r.maxSiblings, int64(n)) }

func (r *recorder) sawRead(rr readReply) {
	storeMax(&r.maxSiblings, int64(len(rr.Siblings)))
	storeMax(&r.maxContext, int64(rr.ContextBytes))
}

func storeMax(v *atomic.Int64, n int64) {
	for {
		cur := v.Load()
		if n <= cur || v.CompareAndSwap(cur, n) {
			return
		}
	}
}

// history is a snapshot of the recorder.
type history struct {
	Adds []addRec
	Dels []delRec
}

func (r *recorder) snapshot() history {
	r.mu.Lock()
	defer r.mu.Unlock()
	return history{Adds: slices.Clone(r.adds), Dels: slices.Clone(r.dels)}
}

func (r *recorder) summary() string {
	h := r.snapshot()
	acked, dels := 0, 0
	for _, a := range h.Adds {
		if a.Acked {
			acked++
		}
	}
	for _, d := range h.Dels {
		if d.Outcome == delAcked {
			dels++
		}
	}
	return fmt.Sprintf("%d adds (%d acked), %d deletes (%d acked)", len(h.Adds), acked, len(h.Dels), dels)
}

// report is the checker's verdict. line() is the one-line form of
// TESTING §3; the JSON form adds the details.
type report struct {
	Acked          int    `json:"acked"`
	Lost           int    `json:"lost"`
	UnackedPresent int    `json:"unacked_present"`
	ConvergeMS     int64  `json:"converge_ms"` // -1: did not converge within the bound
	MaxSiblings    int    `json:"max_siblings"`
	Resurrected    int    `json:"resurrected"`
	Seed           uint64 `json:"seed"`

	Mode      string `json:"mode"`
	Converged bool   `json:"converged"`
	Attempted int    `json:"attempted"` // adds attempted
	Unacked   int    `json:"unacked"`
	// UnackedBy counts the unacknowledged adds by what the client got.
	UnackedBy map[string]int `json:"unacked_by,omitempty"`
	// Deletes and DeletesAcked count deletes of whole keys; DeletedElems is
	// the acked elements an acknowledged or possibly-applied delete covered
	// (excused from lost).
	Deletes      int `json:"deletes"`
	DeletesAcked int `json:"deletes_acked"`
	DeletedElems int `json:"deleted_elems"`
	// Reappeared counts elements an acked delete covered that are present at
	// the end by any route. A write concurrent with the delete (or one that
	// read a stale replica under sloppy quorum) carries its set, with those
	// elements, as a sibling the tombstone does not cover: that is the
	// documented Dynamo behaviour, not a resurrection. Resurrected counts
	// only elements present in a version the delete itself covered.
	Reappeared int `json:"reappeared"`
	// SupersededBack counts final siblings written by a version that an
	// acknowledged write had read and so superseded.
	SupersededBack int `json:"superseded_back"`
	// MaxContextBytes is the largest causal context a read returned, in
	// text form (Limits.MaxContextSize bounds its binary form, 4 KiB by
	// default): every crash gives a node a new actor.
	MaxContextBytes int64  `json:"max_context_bytes"`
	Faults          Faults `json:"faults"`
	// Crashes are node exits nobody asked for (TESTING §1 promise 5).
	Crashes           []string `json:"crashes,omitempty"`
	OK                bool     `json:"ok"`
	Failures          []string `json:"failures,omitempty"`
	NotConverged      string   `json:"not_converged,omitempty"`
	LostSample        []string `json:"lost_sample,omitempty"`
	ResurrectedSample []string `json:"resurrected_sample,omitempty"`
}

// line is the report line of TESTING §3.
func (r report) line() string {
	return fmt.Sprintf("acked=%d lost=%d unacked_present=%d converge_ms=%d max_siblings=%d resurrected=%d seed=%d",
		r.Acked, r.Lost, r.UnackedPresent, r.ConvergeMS, r.MaxSiblings, r.Resurrected, r.Seed)
}

// finish sets OK and Failures: union mode fails on any loss or
// resurrection; both modes fail when the replicas did not converge. Losses
// in lww mode are expected and only reported.
func (r *report) finish(notConverged string) {
	r.Failures = nil
	if !r.Converged {
		r.NotConverged = notConverged
		r.Failures = append(r.Failures, "replicas did not converge: "+notConverged)
	}
	if len(r.Crashes) > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("nodes crashed: %v", r.Crashes))
	}
	if r.Mode == "union" && r.Lost > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d acknowledged elements lost, e.g. %v", r.Lost, r.LostSample))
	}
	if r.Mode == "union" && r.Resurrected > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d deleted elements resurrected, e.g. %v", r.Resurrected, r.ResurrectedSample))
	}
	r.OK = len(r.Failures) == 0
}

// check holds the final state of every key (its siblings) against the
// history:
//
//   - lost: acknowledged elements absent at the end, except those a delete
//     may have removed: covered by a delete that was acknowledged or may
//     have been stored (its Get saw them), or added before a delete whose
//     outcome is unknown ended.
//   - unacked_present: elements whose add was not acknowledged, present.
//   - resurrected: elements covered by an acknowledged delete that are
//     present in a final sibling written by a version that delete's Get saw
//     (so its tombstone supersedes it): the deleted version itself came
//     back. Elements are unique and never added again, but every add rewrites
//     the whole set it read, so an element can legitimately come back in a
//     sibling concurrent with the delete; those count as Reappeared only.
func check(h history, final map[string][]siblingView, mode string) report {
	rep := report{Mode: mode}
	present := map[string]map[int64]bool{}
	writers := map[string]map[int64]siblingView{}
	for key, sibs := range final {
		present[key], writers[key] = map[int64]bool{}, map[int64]siblingView{}
		for _, sb := range sibs {
			writers[key][sb.Writer] = sb
			for _, e := range sb.Elems {
				present[key][e] = true
			}
		}
	}
	excused := map[string]map[int64]bool{} // key -> elements a delete may have removed
	unknownEnd := map[string]time.Time{}   // key -> end of the latest delete of unknown outcome
	resurrected := map[int64]bool{}
	reappeared := map[int64]bool{}
	for _, d := range h.Dels {
		rep.Deletes++
		switch d.Outcome {
		case delAcked, delFailed:
			if excused[d.Key] == nil {
				excused[d.Key] = map[int64]bool{}
			}
			for _, e := range d.Elems {
				excused[d.Key][e] = true
			}
		case delUnknown:
			if d.End.After(unknownEnd[d.Key]) {
				unknownEnd[d.Key] = d.End
			}
		}
		if d.Outcome != delAcked {
			continue
		}
		rep.DeletesAcked++
		covered := map[int64]bool{}
		for _, e := range d.Elems {
			covered[e] = true
			if present[d.Key][e] {
				reappeared[e] = true
			}
		}
		for _, w := range d.Writers {
			sb, ok := writers[d.Key][w]
			if !ok {
				continue
			}
			for _, e := range sb.Elems {
				if covered[e] && !resurrected[e] {
					resurrected[e] = true
					if len(rep.ResurrectedSample) < 10 {
						rep.ResurrectedSample = append(rep.ResurrectedSample, fmt.Sprintf("%s/%d (version %d, deleted at %s)", d.Key, e, w, d.End.Format("15:04:05.000")))
					}
				}
			}
		}
	}
	rep.Resurrected, rep.Reappeared = len(resurrected), len(reappeared)

	superseded := map[string]map[int64]bool{}
	for _, a := range h.Adds {
		rep.Attempted++
		if !a.Acked {
			rep.Unacked++
			if rep.UnackedBy == nil {
				rep.UnackedBy = map[string]int{}
			}
			rep.UnackedBy[a.Err]++
			if present[a.Key][a.Elem] {
				rep.UnackedPresent++
			}
			continue
		}
		rep.Acked++
		if superseded[a.Key] == nil {
			superseded[a.Key] = map[int64]bool{}
		}
		for _, w := range a.Superseded {
			superseded[a.Key][w] = true
		}
		if present[a.Key][a.Elem] {
			continue
		}
		if excused[a.Key][a.Elem] || a.Start.Before(unknownEnd[a.Key]) {
			rep.DeletedElems++
			continue
		}
		rep.Lost++
		if len(rep.LostSample) < 10 {
			rep.LostSample = append(rep.LostSample, fmt.Sprintf("%s/%d (acked %s by version %d)", a.Key, a.Elem, a.End.Format("15:04:05.000"), a.Writer))
		}
	}
	for key, ws := range writers {
		for w := range ws {
			if superseded[key][w] {
				rep.SupersededBack++
			}
		}
	}
	return rep
}
