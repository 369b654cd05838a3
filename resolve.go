// resolve.go: §4.4, §6.1 application-side reconciliation: resolver callbacks,
// the paper's built-in strategies, and a typed read-merge-modify-write loop.
package dynamo

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// Resolver merges the concurrent siblings of key into one value. It is called
// with two or more siblings, must not retain or modify them, and returns a
// value it owns. It must be deterministic and should be commutative in its
// input (the order of siblings carries no meaning).
type Resolver func(key []byte, siblings []Sibling) ([]byte, error)

// Latest keeps the sibling with the highest Timestamp: last write wins. Ties
// go to the greater value in byte order, so every node picks the same one.
// Writes whose Timestamps lose are discarded: under clock skew that can be the
// write that happened last.
func Latest(_ []byte, siblings []Sibling) ([]byte, error) {
	if len(siblings) == 0 {
		return nil, nil
	}
	best := siblings[0]
	for _, s := range siblings[1:] {
		if c := s.Timestamp.Compare(best.Timestamp); c > 0 || (c == 0 && bytes.Compare(s.Value, best.Value) > 0) {
			best = s
		}
	}
	return bytes.Clone(best.Value), nil
}

// Codec turns typed values into stored bytes and back.
type Codec[T any] interface {
	Marshal(v T) ([]byte, error)
	Unmarshal(data []byte) (T, error)
}

// MsgpackCodec encodes values with msgpack.
type MsgpackCodec[T any] struct{}

// Marshal encodes v.
func (MsgpackCodec[T]) Marshal(v T) ([]byte, error) { return msgpack.Marshal(v) }

// Unmarshal decodes data.
func (MsgpackCodec[T]) Unmarshal(data []byte) (T, error) {
	var v T
	err := msgpack.Unmarshal(data, &v)
	return v, err
}

// JSONCodec encodes values with encoding/json.
type JSONCodec[T any] struct{}

// Marshal encodes v.
func (JSONCodec[T]) Marshal(v T) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes data.
func (JSONCodec[T]) Unmarshal(data []byte) (T, error) {
	var v T
	err := json.Unmarshal(data, &v)
	return v, err
}

// Merge combines typed sibling values into one.
type Merge[T any] func(values []T) (T, error)

// Union merges set-valued siblings into their union, sorted: the shopping
// cart's strategy. An element removed from one sibling survives if another
// sibling still holds it.
func Union[E cmp.Ordered](values [][]E) ([]E, error) {
	var out []E
	for _, v := range values {
		out = append(out, v...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Max keeps the greatest value: the high score's strategy.
func Max[T cmp.Ordered](values []T) (T, error) {
	var zero T
	if len(values) == 0 {
		return zero, nil
	}
	return slices.Max(values), nil
}

// Resolve lifts a typed Merge to a Resolver: siblings are decoded with codec,
// merged, and the result encoded.
func Resolve[T any](codec Codec[T], merge Merge[T]) Resolver {
	return func(_ []byte, siblings []Sibling) ([]byte, error) {
		vals, err := decodeAll(codec, siblings)
		if err != nil {
			return nil, err
		}
		v, err := merge(vals)
		if err != nil {
			return nil, err
		}
		return codec.Marshal(v)
	}
}

func decodeAll[T any](codec Codec[T], siblings []Sibling) ([]T, error) {
	vals := make([]T, 0, len(siblings))
	for i, s := range siblings {
		v, err := codec.Unmarshal(s.Value)
		if err != nil {
			return nil, fmt.Errorf("sibling %d: %w", i, err)
		}
		vals = append(vals, v)
	}
	return vals, nil
}

// Modify runs the read-merge-modify-write loop in one call. It reads key,
// decodes and merges its siblings with merge (found is false when the key is
// absent or deleted, and cur is then T's zero value), applies fn, and writes
// the result with the read's context, so the write supersedes every sibling it
// merged. A quorum failure of the read or the write is retried from the read
// (WithRetries, default 2). Concurrent Modify calls never block each other:
// their writes become siblings that the next Modify merges. It returns the
// value written.
func Modify[T any](ctx context.Context, s *Store, key []byte, codec Codec[T], merge Merge[T], fn func(cur T, found bool) (T, error), opts ...Option) (T, error) {
	var zero T
	o, err := s.options(opts)
	if err != nil {
		return zero, err
	}
	for attempt := 0; ; attempt++ {
		v, err := modifyOnce(ctx, s, key, codec, merge, fn, opts)
		if err == nil || attempt >= o.retries || ctx.Err() != nil ||
			!(errors.Is(err, ErrReadQuorum) || errors.Is(err, ErrWriteQuorum)) {
			return v, err
		}
	}
}

func modifyOnce[T any](ctx context.Context, s *Store, key []byte, codec Codec[T], merge Merge[T], fn func(cur T, found bool) (T, error), opts []Option) (T, error) {
	var zero T
	sibs, c, err := s.Get(ctx, key, opts...)
	if err != nil {
		return zero, err
	}
	var cur T
	if len(sibs) > 0 {
		if cur, err = mergeSiblings(codec, merge, key, sibs); err != nil {
			return zero, err
		}
	}
	next, err := fn(cur, len(sibs) > 0)
	if err != nil {
		return zero, err
	}
	b, err := codec.Marshal(next)
	if err != nil {
		return zero, fmt.Errorf("dynamo: encode %q: %w", key, err)
	}
	if err := s.Put(ctx, key, b, c, opts...); err != nil {
		return zero, err
	}
	return next, nil
}
