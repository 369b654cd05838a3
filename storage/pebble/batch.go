// batch.go: many keys in one commit: UpdateBatch and DeletePrefix
// (storage.Batcher, storage.PrefixDeleter; docs/DESIGN.md §4).
package pebble

import (
	"bytes"
	"slices"

	"github.com/dynamo-kv/dynamo/storage"
)

// UpdateBatch applies ops in order in one commit; see storage.Batcher.
func (s *Store) UpdateBatch(ops []storage.Op) []error {
	errs := make([]error, len(ops))
	s.mu.RLock()
	defer s.mu.RUnlock()
	every := func(err error) []error {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	if s.closed {
		return every(storage.ErrClosed)
	}
	if err := s.Failed(); err != nil {
		return every(err)
	}
	var held []int
	for _, op := range ops {
		if len(op.Key) > 0 {
			held = append(held, s.stripe(op.Key))
		}
	}
	slices.Sort(held)
	held = slices.Compact(held)
	for _, i := range held {
		s.locks[i].Lock()
	}
	defer func() {
		for _, i := range held {
			s.locks[i].Unlock()
		}
	}()

	// pending holds each key's value as the Ops so far left it.
	type state struct{ cur, stored []byte }
	pending := map[string]*state{}
	for i, op := range ops {
		if len(op.Key) == 0 {
			errs[i] = storage.ErrEmptyKey
			continue
		}
		st, ok := pending[string(op.Key)]
		if !ok {
			cur, err := s.read(op.Key)
			if err != nil {
				errs[i] = err
				continue
			}
			st = &state{cur: cur, stored: cur}
			pending[string(op.Key)] = st
		}
		next, err := op.Fn(st.cur)
		if err != nil {
			errs[i] = err
			continue
		}
		st.cur = next
	}
	b := s.db.NewBatch()
	defer b.Close()
	keys := make([]string, 0, len(pending))
	for k := range pending {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		st := pending[k]
		if err := s.write(b, []byte(k), st.stored, st.cur); err != nil {
			return every(err)
		}
	}
	if !b.Empty() {
		if err := s.commit(b); err != nil {
			return every(err)
		}
	}
	for _, err := range errs {
		if err == nil {
			s.updates.Add(1)
		}
	}
	return errs
}

// DeletePrefix deletes, durably, every key that starts with prefix; see
// storage.PrefixDeleter. Updates wait while it runs.
func (s *Store) DeletePrefix(prefix []byte) (int, error) {
	if len(prefix) == 0 {
		return 0, storage.ErrEmptyKey
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, storage.ErrClosed
	}
	if err := s.Failed(); err != nil {
		return 0, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	n := 0
	err := s.forEach(prefix, func(k, v []byte) error {
		n++
		return s.write(b, bytes.Clone(k), v, nil)
	})
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	if err := s.commit(b); err != nil {
		return 0, err
	}
	return n, nil
}
