// sums.go: per-bucket hash sums a Storage may keep durably with its data, so
// that a node restarts without scanning every key (DESIGN §4, paper §4.7).
package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxSumBuckets is the most buckets a SumSpec may ask for.
const MaxSumBuckets = 1 << 22

// MaxSumPrefix is the longest SumSpec.Prefix, in bytes.
const MaxSumPrefix = 64

// SumSpec says which keys a Storage sums and how. A key is summed when it
// starts with Prefix and has at least 5 more bytes: the 4 after Prefix are
// its bucket (a big-endian uint32, below Buckets; a key of a higher bucket
// is not summed) and the rest, at least one byte, its name. Its bucket's
// sum is the XOR of Digest(name, value) over the bucket's keys, so a change
// of a key moves its bucket's sum by the XOR of its old and new digests,
// in any order. The zero SumSpec is invalid.
type SumSpec struct {
	// Prefix starts every summed key: 1 to MaxSumPrefix bytes. The
	// Storage keeps its own copy.
	Prefix []byte
	// Buckets is how many sums there are: 1 to MaxSumBuckets.
	Buckets int
}

// ErrInvalidSumSpec is returned (wrapped) for a SumSpec out of range.
var ErrInvalidSumSpec = errors.New("storage: invalid sum spec")

// Validate reports whether s is in range, with an error matching
// ErrInvalidSumSpec when it is not.
func (s SumSpec) Validate() error {
	if len(s.Prefix) == 0 || len(s.Prefix) > MaxSumPrefix {
		return fmt.Errorf("%w: prefix of %d bytes (want 1 to %d)", ErrInvalidSumSpec, len(s.Prefix), MaxSumPrefix)
	}
	if s.Buckets < 1 || s.Buckets > MaxSumBuckets {
		return fmt.Errorf("%w: %d buckets (want 1 to %d)", ErrInvalidSumSpec, s.Buckets, MaxSumBuckets)
	}
	return nil
}

// Locate returns key's bucket and name under s (the name aliases key), and
// whether s sums key at all.
func (s SumSpec) Locate(key []byte) (bucket int, name []byte, ok bool) {
	n := len(s.Prefix)
	if len(key) < n+5 || !bytes.HasPrefix(key, s.Prefix) {
		return 0, nil, false
	}
	b := binary.BigEndian.Uint32(key[n : n+4])
	if uint64(b) >= uint64(s.Buckets) {
		return 0, nil, false
	}
	return int(b), key[n+4:], true
}

// Add XORs into sums (of length s.Buckets) the digest of key holding value,
// if s sums key; a nil value (an absent key) adds nothing. Adding a key's
// value twice takes it out again.
func (s SumSpec) Add(sums []uint64, key, value []byte) {
	if b, name, ok := s.Locate(key); ok {
		sums[b] ^= Digest(name, value)
	}
}

// Summer is implemented by a Storage that keeps the sums of a SumSpec
// durably, in step with its data, so that whoever needs them at start-up
// reads them instead of scanning every key (a Dynamo node's per-partition
// hashes). Callers without one compute the sums with ComputeSums.
type Summer interface {
	// Sums returns the sums (of length spec.Buckets, the caller's) over
	// what the Storage holds now, and keeps them from then on, across
	// reopens, until Sums is called with another spec. The first call
	// for a spec, or one after the kept sums were found damaged, computes
	// them with a scan of the data; later ones, after a reopen too, read
	// them. Writes under spec.Prefix while Sums runs may or may not be in
	// its result: call it before writing. spec is only read during the
	// call.
	Sums(spec SumSpec) ([]uint64, error)
}

// ComputeSums computes spec's sums over what s holds now, with one ForEach
// of spec.Prefix. Damaged values are left out, and their error, matching
// ErrCorrupt, is returned with the sums of the rest.
func ComputeSums(s Storage, spec SumSpec) ([]uint64, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	sums := make([]uint64, spec.Buckets)
	err := s.ForEach(spec.Prefix, func(k, v []byte) error {
		spec.Add(sums, k, v)
		return nil
	})
	return sums, err
}

// Digest identifies key holding value: zero for an absent key (a nil or
// empty value), never zero otherwise. It is the same on every platform and
// in every release, since nodes compare sums of it.
func Digest(key, value []byte) uint64 {
	if len(value) == 0 {
		return 0
	}
	d := HashWords(HashWords(uint64(len(key)), key), value)
	if d != 0 {
		return d
	}
	return 1
}

// HashWords folds b into h eight bytes at a time (a splitmix64 chain):
// several times faster than byte-wise FNV on values of a few KiB, and the
// same on every platform.
func HashWords(h uint64, b []byte) uint64 {
	h = mix64(h ^ uint64(len(b)) ^ 0x9e3779b97f4a7c15)
	for len(b) >= 8 {
		h = mix64(h ^ binary.LittleEndian.Uint64(b))
		b = b[8:]
	}
	var tail [8]byte
	copy(tail[:], b)
	return mix64(h ^ binary.LittleEndian.Uint64(tail[:]) ^ uint64(len(b))<<56)
}

// mix64 is the splitmix64 finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
