// register.go: Register, a last-writer-wins register on §4.4 siblings:
// among concurrent writes the latest timestamp wins, ties broken by dot;
// GetRegister and UpdateRegister.
package dynamo

import (
	"context"
	"fmt"
	"time"
)

// Register is a last-writer-wins register: one value, and when writes were
// concurrent, the one with the latest timestamp. A write that causally
// follows another always replaces it, whatever the clocks say (it
// superseded it through its context); only concurrent writes are ordered by
// timestamp, which comes from the coordinator's Config.Clock, and then by
// dot, so every reader picks the same one. A concurrent write that loses is
// discarded: under clock skew that can be the one that happened last.
//
// Read one with GetRegister and write one with UpdateRegister. A Delete of
// the key is a write like any other: the register reads as not Found when
// the Delete wins.
type Register[T any] struct {
	// Value is the winning value; T's zero value when Found is false.
	Value T
	// Found is false when the key is absent or a Delete won.
	Found bool
	// Time is when the winning write was coordinated, by its coordinator's
	// clock; zero when nothing was ever written.
	Time time.Time

	dot dot
}

// mergeRegisters keeps the later of two concurrent writes: the later
// timestamp, then the greater dot. A register that was never written loses
// to any write. Commutative, associative and idempotent.
func mergeRegisters[T any](a, b Register[T]) Register[T] {
	switch {
	case a.dot.Counter == 0:
		return b
	case b.dot.Counter == 0:
		return a
	case !a.Time.Equal(b.Time):
		if b.Time.After(a.Time) {
			return b
		}
		return a
	case b.dot.compare(a.dot) > 0:
		return b
	}
	return a
}

// resolveRegister merges the siblings of a read, each decoded with codec.
func resolveRegister[T any](key []byte, st state, codec Codec[T]) (Register[T], error) {
	vals, err := readValues(key, st, func(sb sibling) (Register[T], error) {
		r := Register[T]{Time: time.Unix(0, sb.Time), dot: sb.Dot}
		if sb.Tombstone {
			return r, nil
		}
		raw, err := decodeRegister(sb.Value)
		if err != nil {
			return r, err
		}
		if r.Value, err = codec.Unmarshal(raw); err != nil {
			return r, fmt.Errorf("register value: %w", err)
		}
		r.Found = true
		return r, nil
	})
	var acc Register[T]
	for _, v := range vals {
		acc = mergeRegisters(acc, v)
	}
	return acc, err
}

// encodeRegister is the stored form of a register: [tag, value], value
// being the codec's bytes.
func encodeRegister(value []byte) []byte {
	p := getEncoder()
	beginValue(p.enc, 2, tagRegister)
	_ = p.enc.EncodeBytes(value)
	return p.finish()
}

func decodeRegister(b []byte) ([]byte, error) {
	d := newWireDecoder(b)
	extra, err := openValue(d, tagRegister, 1)
	if err != nil {
		return nil, err
	}
	v, err := d.bytes()
	if err != nil {
		return nil, err
	}
	return v, closeValue(d, extra-1)
}

// GetRegister reads the register stored under key, a quorum read like Get,
// and returns the winning write, decoded with codec. Config.Resolver plays
// no part; GetRegister only reads key. A sibling that is not a register
// gives an error matching ErrResolve.
func GetRegister[T any](ctx context.Context, s *Store, key []byte, codec Codec[T], opts ...Option) (Register[T], error) {
	st, _, err := s.getState(ctx, key, opts)
	if err != nil {
		return Register[T]{}, err
	}
	return resolveRegister(key, st, codec)
}

// UpdateRegister reads key's register as GetRegister does, passes it to fn,
// and writes fn's value with the read's context, so it replaces every
// sibling the read saw. An error from fn is returned as it is, and nothing
// is written. A quorum failure of the read or the write is retried from the
// read (WithRetries, default 2). It returns the value written.
func UpdateRegister[T any](ctx context.Context, s *Store, key []byte, codec Codec[T], fn func(cur Register[T]) (T, error), opts ...Option) (T, error) {
	var out T
	err := updateValue(ctx, s, key, opts, true, func(st state, _ Context) ([]byte, error) {
		cur, err := resolveRegister(key, st, codec)
		if err != nil {
			return nil, err
		}
		next, err := fn(cur)
		if err != nil {
			return nil, err
		}
		b, err := codec.Marshal(next)
		if err != nil {
			return nil, fmt.Errorf("dynamo: encode register %q: %w", key, err)
		}
		out = next
		return encodeRegister(b), nil
	})
	return out, err
}
