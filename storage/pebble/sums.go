// sums.go: the bucket sums kept in step with the data, one merge record per
// bucket (storage.Summer; docs/DESIGN.md §4).
package pebble

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	cpebble "github.com/cockroachdb/pebble"

	"github.com/dynamo-kv/dynamo/storage"
)

// sumKey is bucket's sum record.
func sumKey(bucket int) []byte {
	return binary.BigEndian.AppendUint32([]byte{sumPrefix}, uint32(bucket))
}

// xorMerger combines a sum record's operands: each is 8 bytes, a uint64
// (LE), and the record's value is their XOR. Its name is stored in the
// database: it must never change.
var xorMerger = &cpebble.Merger{
	Name: "dynamo.xor64",
	Merge: func(key, value []byte) (cpebble.ValueMerger, error) {
		m := &xorValue{}
		if err := m.MergeNewer(value); err != nil {
			return nil, err
		}
		return m, nil
	},
}

// errSumOperand means a sum record holds something other than 8 bytes.
var errSumOperand = errors.New("pebble: sum operand is not 8 bytes")

type xorValue struct {
	x   uint64
	bad bool
}

func (m *xorValue) MergeNewer(value []byte) error {
	if len(value) != 8 {
		m.bad = true // kept, so that Sums sees it and scans again
		return nil
	}
	m.x ^= binary.LittleEndian.Uint64(value)
	return nil
}

func (m *xorValue) MergeOlder(value []byte) error { return m.MergeNewer(value) }

func (m *xorValue) Finish(bool) ([]byte, io.Closer, error) {
	if m.bad {
		return []byte{0}, nil, nil
	}
	return binary.LittleEndian.AppendUint64(nil, m.x), nil, nil
}

// encodeSumSpec is how a spec is stored under sumSpecKey.
func encodeSumSpec(spec storage.SumSpec) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(spec.Buckets))
	return append(b, spec.Prefix...)
}

// decodeSumSpec reverses encodeSumSpec; ok is false for bytes it did not
// write or a spec out of range.
func decodeSumSpec(b []byte) (storage.SumSpec, bool) {
	if len(b) < 5 {
		return storage.SumSpec{}, false
	}
	spec := storage.SumSpec{Buckets: int(binary.BigEndian.Uint32(b)), Prefix: bytes.Clone(b[4:])}
	return spec, spec.Validate() == nil
}

// loadSpec returns the spec the kept sums follow, or nil. A record that
// does not decode, or that sits in a damaged block, is dropped with the
// sums: Sums will scan.
func (s *Store) loadSpec() (*storage.SumSpec, error) {
	v, closer, err := s.db.Get(sumSpecKey)
	if errors.Is(err, cpebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		if !cpebble.IsCorruptionError(err) {
			return nil, err
		}
		// The kept sums can be rebuilt from the data: drop them (the
		// deletes shadow the damaged records) and let Sums scan.
		s.corrupt.Add(1)
		return nil, s.dropSums()
	}
	spec, ok := decodeSumSpec(v)
	_ = closer.Close()
	if !ok {
		return nil, s.dropSums()
	}
	return &spec, nil
}

// dropSums deletes the kept sums and their spec, durably.
func (s *Store) dropSums() error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange([]byte{sumPrefix}, []byte{sumPrefix + 1}, nil); err != nil {
		return err
	}
	if err := b.Delete(sumSpecKey, nil); err != nil {
		return err
	}
	return s.commit(b)
}

// Sums returns spec's sums over the data; see storage.Summer. The first
// call for a spec scans the data, with Updates waiting; later ones, after
// a reopen or a crash too, read the kept sums.
func (s *Store) Sums(spec storage.SumSpec) ([]uint64, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, storage.ErrClosed
	}
	if s.spec != nil && s.spec.Buckets == spec.Buckets && bytes.Equal(s.spec.Prefix, spec.Prefix) {
		sums, err := s.readSums(spec)
		if err == nil {
			return sums, nil
		}
		if !errors.Is(err, errSumOperand) && !errors.Is(err, storage.ErrCorrupt) {
			return nil, err
		}
		// A damaged record: scan the data and replace the sums.
	}
	// Scan, then replace the kept sums with the result in one batch.
	s.sumScans.Add(1)
	sums := make([]uint64, spec.Buckets)
	err := s.forEach(spec.Prefix, func(k, v []byte) error {
		spec.Add(sums, k, v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange([]byte{sumPrefix}, []byte{sumPrefix + 1}, nil); err != nil {
		return nil, err
	}
	for i, x := range sums {
		if x != 0 {
			if err := b.Set(sumKey(i), binary.LittleEndian.AppendUint64(nil, x), nil); err != nil {
				return nil, err
			}
		}
	}
	if err := b.Set(sumSpecKey, encodeSumSpec(spec), nil); err != nil {
		return nil, err
	}
	if err := s.commit(b); err != nil {
		return nil, fmt.Errorf("pebble: keep sums: %w", err)
	}
	kept := storage.SumSpec{Prefix: bytes.Clone(spec.Prefix), Buckets: spec.Buckets}
	s.spec = &kept
	return sums, nil
}

// readSums reads the kept sums; an error matching errSumOperand means a
// record is damaged.
func (s *Store) readSums(spec storage.SumSpec) (sums []uint64, err error) {
	sums = make([]uint64, spec.Buckets)
	it, err := s.db.NewIter(&cpebble.IterOptions{LowerBound: []byte{sumPrefix}, UpperBound: []byte{sumPrefix + 1}})
	if err != nil {
		return nil, mapErr(err)
	}
	defer func() {
		if cerr := it.Close(); err == nil && cerr != nil {
			err = mapErr(cerr)
		}
	}()
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		v, verr := it.ValueAndErr()
		if verr != nil {
			return nil, mapErr(verr)
		}
		if len(k) != 5 || len(v) != 8 {
			return nil, errSumOperand
		}
		i := int(binary.BigEndian.Uint32(k[1:]))
		if i >= spec.Buckets {
			return nil, errSumOperand
		}
		sums[i] = binary.LittleEndian.Uint64(v)
	}
	if err := it.Error(); err != nil {
		return nil, mapErr(err)
	}
	return sums, nil
}
