// Many keys in one commit: UpdateBatch and DeletePrefix go through the committer as one request, one log record and one fdatasync (DESIGN §4).
package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/dynamo-kv/dynamo/storage"
)

var (
	_ storage.Batcher       = (*Store)(nil)
	_ storage.PrefixDeleter = (*Store)(nil)
)

// UpdateBatch applies ops in order, each as Update would (an Op sees the
// results of the Ops before it), in one commit: one log append and one
// fdatasync for all of them, unless the batch shares its commit with other
// Updates. It returns one error per Op (see storage.Batcher). Each Op's fn
// runs exactly once, on the committer; if one panics, its write is skipped
// and UpdateBatch panics with the same value once the others are durable.
func (s *Store) UpdateBatch(ops []storage.Op) []error {
	errs := make([]error, len(ops))
	g := &request{}
	idx := make([]int, 0, len(ops)) // g.group[j] is ops[idx[j]]
	for i, op := range ops {
		if err := checkKey(op.Key); err != nil {
			errs[i] = err
			continue
		}
		g.group = append(g.group, &request{key: bytes.Clone(op.Key), fn: op.Fn})
		idx = append(idx, i)
	}
	if len(g.group) == 0 {
		return errs
	}
	if err := errors.Join(s.enqueue(g), g.err); err != nil {
		for _, i := range idx {
			errs[i] = err
		}
		return errs
	}
	var panicked *request
	for j, p := range g.group {
		errs[idx[j]] = p.err
		if p.panicked && panicked == nil {
			panicked = p
		}
	}
	if panicked != nil {
		panic(panicked.panicVal)
	}
	return errs
}

// DeletePrefix deletes every key that starts with prefix in one commit and
// returns how many were present (see storage.PrefixDeleter). The keys are
// found by the committer, so an Update queued before the call is seen and
// one queued after it is not.
func (s *Store) DeletePrefix(prefix []byte) (int, error) {
	if len(prefix) == 0 {
		return 0, storage.ErrEmptyKey
	}
	r := &request{prefix: bytes.Clone(prefix)}
	if err := errors.Join(s.enqueue(r), r.err); err != nil {
		return 0, err
	}
	var errs []error
	for _, p := range r.group {
		errs = append(errs, p.err)
	}
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return r.deleted, nil
}

// checkKey reports a key Update would refuse.
func checkKey(key []byte) error {
	if len(key) == 0 {
		return storage.ErrEmptyKey
	}
	if len(key) > bbolt.MaxKeySize {
		return fmt.Errorf("bolt: update: key of %d bytes is over the limit of %d: %w",
			len(key), bbolt.MaxKeySize, berrors.ErrKeyTooLarge)
	}
	return nil
}

// parts returns the one-key requests r commits: itself, or its group.
func (r *request) parts() []*request {
	if r.group != nil || r.prefix != nil {
		return r.group
	}
	return []*request{r}
}

// expand fills a prefix delete's group with a delete of every key under
// its prefix, in key order, as the batch sees them: its earlier results,
// the memtables and bbolt. The committer calls it.
func (r *request) expand(s *Store, rd *batchReader) {
	keys := map[string]bool{}
	for k := range s.overlay {
		if bytes.HasPrefix([]byte(k), r.prefix) {
			keys[k] = true
		}
	}
	s.memMu.RLock()
	for _, e := range s.memPrefix(r.prefix) {
		keys[string(e.key)] = true
	}
	s.memMu.RUnlock()
	if err := rd.dbKeys(r.prefix, keys); err != nil {
		r.err = err
		return
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	slices.Sort(sorted)
	for _, k := range sorted {
		r.group = append(r.group, &request{key: []byte(k), fn: func(cur []byte) ([]byte, error) {
			if cur != nil {
				r.deleted++
			}
			return nil, nil
		}})
	}
}

// dbKeys adds to keys every key under prefix in bbolt, as the batch's read
// transaction sees it.
func (rd *batchReader) dbKeys(prefix []byte, keys map[string]bool) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("bolt: read %s: %w: bbolt panicked: %v", rd.s.path, storage.ErrCorrupt, p)
		}
	}()
	if rd.tx == nil {
		if rd.tx, err = rd.s.db.Begin(false); err != nil {
			return fmt.Errorf("bolt: read: %w", err)
		}
	}
	b := rd.tx.Bucket(bucketName)
	if b == nil {
		return errNoBucket
	}
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys[string(k)] = true
	}
	return nil
}
