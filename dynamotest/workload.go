// workload.go: the clients' operations on set-valued keys and their recorded history (§4.4 reconciliation, §6.1 shopping cart).
package dynamotest

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/dynamo-kv/dynamo"
)

// opKind is what a client operation does.
type opKind int

const (
	opAdd    opKind = iota // Modify: add one unique element to the key's set
	opRead                 // Get without a resolver: observe siblings
	opDelete               // Get, then Delete with its context
)

func (k opKind) String() string {
	switch k {
	case opAdd:
		return "add"
	case opRead:
		return "read"
	case opDelete:
		return "delete"
	}
	return setKindString(k)
}

// attempt is one call of an add's Modify function: the set that Modify then
// tried to Put. Every attempt carries its elements onward, acknowledged or not.
type attempt struct {
	at  time.Duration
	set []int64
}

// op is one client operation and its outcome. The simulation's goroutine
// fills the decision fields; the operation's goroutine fills the rest before
// the step's WaitGroup releases the simulation.
type op struct {
	id     int
	step   int // index of the client step that ran it
	client int
	kind   opKind
	key    int
	node   int
	elem   int64         // opAdd: the element added
	offset time.Duration // fake-time delay from the step's start

	start, end time.Duration // fake time since the run started
	err        error         // Modify's, Get's or Delete's error
	attempts   []attempt     // opAdd
	getOK      bool          // opRead, opDelete: the Get succeeded
	observed   []int64       // opRead, opDelete: union of the Get's siblings
	siblings   int           // opRead, opDelete: siblings the Get returned
	sibSets    [][]int64     // opRead, opDelete: each sibling's set, when there were several
	corrupt    error         // a sibling that did not decode
	ctxBytes   int           // the longest text form of a context it read
	tampered   int           // edited contexts Put refused (SimConfig.TamperContexts)
	forged     int           // edited contexts Put did not refuse with ErrBadContext
	blind      bool          // opAdd: written alone with the zero Context (SimConfig.PartialLoss)
	set        *setOp        // SimConfig.ORSet: what an OR-set operation did
}

// acked reports whether the operation's write was acknowledged.
func (o *op) acked() bool { return o.err == nil }

// do runs o through st. It is the operation's goroutine.
func (s *sim) do(o *op, st *dynamo.Store) {
	if o.offset > 0 {
		timer := time.NewTimer(o.offset) // fake time: staggers clients within a step
		<-timer.C
	}
	ctx := context.Background()
	key := s.keys[o.key]
	o.start = s.now()
	switch o.kind {
	case opAdd:
		s.beginWrite(o.key)
		switch {
		case s.blindAdd(o):
			o.err = s.blindPut(ctx, o, st, key)
		case s.cfg.TamperContexts:
			o.err = s.tamperedAdd(ctx, o, st, key)
		case s.cfg.ChainedWrites:
			o.err = s.chainedAdd(ctx, o, st, key)
		default:
			_, o.err = dynamo.Modify(ctx, st, key, s.codec, s.merge, func(cur []int64, _ bool) ([]int64, error) {
				next := insertSorted(slices.Clone(cur), o.elem)
				o.attempts = append(o.attempts, attempt{at: s.now(), set: slices.Clone(next)})
				return next, nil
			})
		}
		s.endWrite(o.key)
	case opRead:
		sibs, c, err := st.Get(ctx, key)
		o.err = err
		if err == nil {
			o.observe(sibs)
			o.ctxBytes = len(c.String())
		}
	case opDelete:
		s.beginWrite(o.key)
		sibs, c, err := st.Get(ctx, key)
		o.err = err
		if err == nil {
			o.observe(sibs)
			o.ctxBytes = len(c.String())
			if s.cfg.Broken == BrokenStaleDelete {
				c = dynamo.Context{}
			}
			o.err = st.Delete(ctx, key, c)
		}
		s.endWrite(o.key)
	default:
		s.doSet(ctx, o, st, key)
	}
	o.end = s.now()
}

// observe records what a successful Get returned.
func (o *op) observe(sibs []dynamo.Sibling) {
	o.getOK = true
	o.siblings = len(sibs)
	var all []int64
	for i, sb := range sibs {
		v, err := setCodec{}.Unmarshal(sb.Value)
		if err != nil {
			o.corrupt = fmt.Errorf("sibling %d of %d: %w", i, len(sibs), err)
			continue
		}
		if len(sibs) > 1 {
			o.sibSets = append(o.sibSets, v)
		}
		all = append(all, v...)
	}
	slices.Sort(all)
	o.observed = slices.Compact(all)
}

func (o *op) String() string {
	var b []byte
	b = fmt.Appendf(b, "op %d c%d %v key %d via n%d", o.id, o.client, o.kind, o.key, o.node)
	switch {
	case o.set != nil:
		b = o.appendSetOutcome(b)
	case o.kind == opAdd:
		b = fmt.Appendf(b, " elem %d attempts %d", o.elem, len(o.attempts))
	case o.getOK:
		b = fmt.Appendf(b, " saw %d siblings, %d elements", o.siblings, len(o.observed))
	}
	b = fmt.Appendf(b, " [%v..%v]", o.start, o.end)
	if o.err != nil {
		b = fmt.Appendf(b, " err: %v", o.err)
	} else {
		b = append(b, " ok"...)
	}
	return string(b)
}

// beginWrite and endWrite count the writes in flight on a key.
func (s *sim) beginWrite(key int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight[key]++
	s.maxInflight = max(s.maxInflight, s.inflight[key])
}

func (s *sim) endWrite(key int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight[key]--
}

// insertSorted adds e to the sorted set, keeping it sorted and unique.
func insertSorted(set []int64, e int64) []int64 {
	i, found := slices.BinarySearch(set, e)
	if found {
		return set
	}
	return slices.Insert(set, i, e)
}
