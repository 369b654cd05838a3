// orset.go: the OR-set workload (SimConfig.ORSet): clients add, re-add and remove elements of dynamo.ORSet keys and read them (§6.1 shopping cart with removals).
package dynamotest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dynamo-kv/dynamo"
)

// OR-set operations. ONLY APPEND TO THIS LIST (they follow workload.go's).
const (
	opSetAdd    opKind = iota + 100 // UpdateSet: add a new unique element
	opSetReAdd                      // UpdateSet: add an element added to the key before
	opSetRemove                     // UpdateSet: remove one element the read observed
	opSetRead                       // GetSet
)

func setKindString(k opKind) string {
	switch k {
	case opSetAdd:
		return "set-add"
	case opSetReAdd:
		return "set-readd"
	case opSetRemove:
		return "set-remove"
	case opSetRead:
		return "set-read"
	}
	return fmt.Sprintf("opKind(%d)", int(k))
}

// setOp is what an OR-set operation did, filled by its goroutine.
type setOp struct {
	attempts []setAttempt // one per call of UpdateSet's function
	observed []int64      // opSetRead: the elements read
}

// setAttempt is one call of an update's function: the elements its read
// observed and, for a remove, the element it took out (removed is false
// when the set was empty).
type setAttempt struct {
	at       time.Duration
	observed []int64
	elem     int64
	removed  bool
}

// pickSetOp decides an OR-set operation for o from p, drawn in [0, 100):
// 50% adds of new elements, 10% re-adds of an element added to the key
// before, 25% removes and 15% reads.
func (s *sim) pickSetOp(o *op, client, p int) {
	o.set = &setOp{}
	var before []int64
	for _, x := range s.ops {
		if x.key == o.key && (x.kind == opSetAdd) {
			before = append(before, x.elem)
		}
	}
	switch {
	case p < 50 || (p < 60 && len(before) == 0):
		o.kind = opSetAdd
		s.counters[client]++
		o.elem = int64(client+1)*1e6 + s.counters[client]
	case p < 60:
		o.kind = opSetReAdd
		o.elem = before[s.rng.IntN(len(before))]
	case p < 85:
		o.kind = opSetRemove
	default:
		o.kind = opSetRead
	}
}

// doSet runs an OR-set operation through st. It is the operation's goroutine.
func (s *sim) doSet(ctx context.Context, o *op, st *dynamo.Store, key []byte) {
	if o.kind == opSetRead {
		o.set.observed, o.err = s.readSet(ctx, st, key)
		o.getOK = o.err == nil
		o.observed = o.set.observed
		return
	}
	s.beginWrite(o.key)
	defer s.endWrite(o.key)
	change := func(observed []int64) (next []int64, a setAttempt) {
		a = setAttempt{at: s.now(), observed: observed, elem: o.elem}
		if o.kind == opSetRemove {
			if len(observed) > 0 {
				i := mix64(uint64(s.cfg.Seed)^uint64(o.id)<<24^uint64(len(o.set.attempts))) % uint64(len(observed))
				a.elem, a.removed = observed[i], true
			}
		}
		return a.apply(observed), a
	}
	if s.cfg.Broken == BrokenUnionRemove {
		_, o.err = dynamo.Modify(ctx, st, key, s.codec, dynamo.Union[int64], func(cur []int64, _ bool) ([]int64, error) {
			next, a := change(slices.Clone(cur))
			o.set.attempts = append(o.set.attempts, a)
			return next, nil
		})
		return
	}
	_, o.err = dynamo.UpdateSet(ctx, st, key, func(set *dynamo.ORSet[int64]) error {
		_, a := change(set.Elements())
		if a.removed {
			set.Remove(a.elem)
		} else if o.kind != opSetRemove {
			set.Add(a.elem)
		}
		o.set.attempts = append(o.set.attempts, a)
		return nil
	})
}

// apply returns the set an attempt writes: its observed set, changed.
func (a setAttempt) apply(observed []int64) []int64 {
	if a.removed {
		return slices.DeleteFunc(slices.Clone(observed), func(e int64) bool { return e == a.elem })
	}
	if a.elem != 0 {
		return insertSorted(slices.Clone(observed), a.elem)
	}
	return observed
}

// readSet reads key's elements: GetSet, or in the broken union mode the
// union of the siblings of a Get.
func (s *sim) readSet(ctx context.Context, st *dynamo.Store, key []byte, opts ...dynamo.Option) ([]int64, error) {
	if s.cfg.Broken == BrokenUnionRemove {
		sibs, _, err := st.Get(ctx, key, opts...)
		if err != nil {
			return nil, err
		}
		var o op
		o.observe(sibs)
		if o.corrupt != nil {
			return nil, o.corrupt
		}
		return o.observed, nil
	}
	set, err := dynamo.GetSet[int64](ctx, st, key, opts...)
	if err != nil {
		return nil, err
	}
	return set.Elements(), nil
}

// readFinalSet is a convergence round's read of key through st (R=N): its
// elements, and the context of a plain Get for comparing nodes.
func (s *sim) readFinalSet(st *dynamo.Store, key []byte) readResult {
	ctx := context.Background()
	_, c, err := st.Get(ctx, key, dynamo.WithR(s.cfg.N))
	r := readResult{ctx: c.String(), err: err}
	if err == nil {
		r.set, r.err = s.readSet(ctx, st, key, dynamo.WithR(s.cfg.N))
	}
	return r
}

// appendSetOutcome describes what an OR-set operation did, for the log.
func (o *op) appendSetOutcome(b []byte) []byte {
	switch {
	case o.kind == opSetRead && o.getOK:
		b = fmt.Appendf(b, " saw %d elements", len(o.set.observed))
	case o.kind == opSetAdd || o.kind == opSetReAdd:
		b = fmt.Appendf(b, " elem %d attempts %d", o.elem, len(o.set.attempts))
	case o.kind == opSetRemove && len(o.set.attempts) > 0:
		a := o.set.attempts[len(o.set.attempts)-1]
		b = fmt.Appendf(b, " removed %d (%t) of %d observed, attempts %d", a.elem, a.removed, len(a.observed), len(o.set.attempts))
	}
	return b
}

// setErrors reports SimConfig combinations the OR-set workload does
// not run.
func (cfg SimConfig) setErrors() []error {
	if !cfg.ORSet {
		if cfg.Broken == BrokenUnionRemove {
			return []error{errors.New("Broken (union-remove) needs ORSet")}
		}
		return nil
	}
	var errs []error
	if cfg.Mode != ModeUnion || cfg.Resolver != nil || cfg.Merge != nil {
		errs = append(errs, errors.New("ORSet takes no Mode, Resolver or Merge: sets merge as OR-sets"))
	}
	if cfg.Broken == BrokenStaleDelete {
		errs = append(errs, errors.New("ORSet runs no deletes: Broken (stale-delete) does not apply"))
	}
	if cfg.LargeValues {
		errs = append(errs, errors.New("ORSet values are not padded: LargeValues does not apply"))
	}
	return errs
}
