// chained.go: SimConfig.ChainedWrites, adds written with PutReturning and
// written again with the context it returned (a chained overwrite).
package dynamotest

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/dynamo-kv/dynamo"
)

// chainedAdd adds o.elem with a Get and a PutReturning, then writes the same
// set again with the returned context and no read in between, retrying the
// pair after a quorum failure like Modify.
func (s *sim) chainedAdd(ctx context.Context, o *op, st *dynamo.Store, key []byte) error {
	var err error
	for range 3 {
		err = s.chainedAddOnce(ctx, o, st, key)
		if err == nil || !(errors.Is(err, dynamo.ErrReadQuorum) || errors.Is(err, dynamo.ErrWriteQuorum)) {
			return err
		}
	}
	return err
}

func (s *sim) chainedAddOnce(ctx context.Context, o *op, st *dynamo.Store, key []byte) error {
	next, value, c, err := s.readAdd(ctx, o, st, key)
	if err != nil {
		return err
	}
	for range 2 {
		o.attempts = append(o.attempts, attempt{at: s.now(), set: slices.Clone(next)})
		if c, err = st.PutReturning(ctx, key, value, c); err != nil {
			return err
		}
	}
	return nil
}

// readAdd is the read of an add done by hand: it Gets key, merges its
// siblings' sets and adds o.elem, returning the new set, its encoding and the
// Get's context.
func (s *sim) readAdd(ctx context.Context, o *op, st *dynamo.Store, key []byte) ([]int64, []byte, dynamo.CausalContext, error) {
	sibs, c, err := st.Get(ctx, key)
	if err != nil {
		return nil, nil, c, err
	}
	var cur []int64
	if len(sibs) > 0 {
		sets := make([][]int64, 0, len(sibs))
		for _, sb := range sibs {
			v, err := s.codec.Unmarshal(sb.Value)
			if err != nil {
				return nil, nil, c, fmt.Errorf("%w: %w", dynamo.ErrResolve, err)
			}
			sets = append(sets, v)
		}
		if cur, err = s.merge(sets); err != nil {
			return nil, nil, c, err
		}
	}
	next := insertSorted(slices.Clone(cur), o.elem)
	value, err := s.codec.Marshal(next)
	return next, value, c, err
}
