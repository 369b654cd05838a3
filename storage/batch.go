// batch.go: the optional interfaces a Storage may add for many keys in one
// commit (a batch of updates, a prefix deleted), and the helpers that fall
// back to Update for a Storage without them (DESIGN §4).
package storage

import (
	"bytes"
	"errors"
)

// Op is one update of a batch: Key's value is replaced with Fn(current),
// with the same rules as Storage.Update (a nil result deletes the key; Fn
// may be called more than once and must not call the Storage). Key is only
// read during the call that takes the Op.
type Op struct {
	Key []byte
	Fn  func(current []byte) ([]byte, error)
}

// Batcher is implemented by a Storage that applies many updates in one
// commit (one fsync for a disk-backed Storage). Callers use UpdateBatch,
// which falls back to one Update per Op for a Storage without it.
type Batcher interface {
	// UpdateBatch applies ops in order, each as Update would (an Op sees
	// the results of the Ops before it, so two Ops of one key both apply),
	// and returns once every applied change is durable. It returns one
	// error per Op, at the Op's index: nil when the Op's change is durable,
	// or why it was not applied (its Fn's error, unwrapped; ErrEmptyKey;
	// ErrCorrupt; or, for every Op, ErrClosed or the commit's I/O error).
	// An Op's failure does not stop the others. The slice is the caller's.
	UpdateBatch(ops []Op) []error
}

// PrefixDeleter is implemented by a Storage that deletes every key that
// starts with a prefix in one commit. Callers use DeletePrefix, which falls
// back to ForEach and UpdateBatch for a Storage without it.
type PrefixDeleter interface {
	// DeletePrefix deletes, durably, every key that starts with prefix and
	// returns how many it deleted. An empty prefix is refused with
	// ErrEmptyKey (it would delete everything). Keys written after the
	// call began may or may not be deleted. prefix is only read during the
	// call.
	DeletePrefix(prefix []byte) (int, error)
}

// UpdateBatch applies ops to s in one commit when s is a Batcher, and
// otherwise with one Update per Op, in order (one commit each). It returns
// one error per Op as Batcher.UpdateBatch does; the slice is the caller's.
func UpdateBatch(s Storage, ops []Op) []error {
	if b, ok := s.(Batcher); ok {
		return b.UpdateBatch(ops)
	}
	errs := make([]error, len(ops))
	for i, op := range ops {
		errs[i] = s.Update(op.Key, op.Fn)
	}
	return errs
}

// DeletePrefix deletes every key of s that starts with prefix: in one
// commit when s is a PrefixDeleter, and otherwise by listing the keys with
// ForEach and deleting them with UpdateBatch. It returns how many keys it
// deleted. The fallback deletes only the keys it listed: a key written
// while it runs survives.
func DeletePrefix(s Storage, prefix []byte) (int, error) {
	if len(prefix) == 0 {
		return 0, ErrEmptyKey
	}
	if d, ok := s.(PrefixDeleter); ok {
		return d.DeletePrefix(prefix)
	}
	var ops []Op
	err := s.ForEach(prefix, func(k, _ []byte) error {
		ops = append(ops, Op{Key: bytes.Clone(k), Fn: deleteFn})
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, err := range UpdateBatch(s, ops) {
		if err != nil {
			errs = append(errs, err)
		} else {
			n++
		}
	}
	return n, errors.Join(errs...)
}

func deleteFn([]byte) ([]byte, error) { return nil, nil }

// Stager is implemented by a Storage whose commit has a moment between an
// update's result being settled and its being durable: storage/bolt's
// group commit settles a batch's results, then appends and fsyncs its log.
// A coordinator replicates the state it writes; told the state is settled,
// it sends it to the other replicas while its own commit is fsynced, rather
// than after.
type Stager interface {
	// UpdateStaged is Update, and also calls staged once fn has returned a
	// result without error and the Storage has taken that result into the
	// commit that makes it durable: from then on it becomes key's value
	// unless that commit fails. A commit that fails after staged fails the
	// Storage for good (Failer): UpdateStaged returns its error and every
	// later update fails, so that no update ever reads the value from
	// before a result others may have been sent. fn is not called again
	// after staged. staged is not called when fn fails or the update is
	// skipped; it may run on any goroutine, must not block and must not
	// call the Storage.
	UpdateStaged(key []byte, fn func(current []byte) ([]byte, error), staged func()) error
}
