// typed.go: §4.4, §6.1 a typed handle on a Store's keys: one codec and one
// merge of siblings for every read and read-merge-modify-write.
package dynamo

import (
	"context"
	"fmt"
)

// Typed reads and modifies keys whose values are of type T, encoded by
// Codec, whose concurrent siblings Merge reconciles. Its zero value is not
// usable: set all three fields. A Typed is a value; copies share the Store.
//
//	carts := dynamo.Typed[[]string]{Store: st, Codec: dynamo.JSONCodec[[]string]{}, Merge: dynamo.Union[string]}
//	cart, err := carts.Modify(ctx, key, func(cart []string, _ bool) ([]string, error) { return append(cart, "pen"), nil })
type Typed[T any] struct {
	Store *Store
	Codec Codec[T]
	Merge Merge[T]
}

// Get reads key (as Store.Get) and returns its siblings decoded and merged,
// with the context that covers them. found is false, and v T's zero value,
// when the key is absent or deleted. A value that fails to decode, or a
// failed merge, returns an error matching ErrResolve.
func (t Typed[T]) Get(ctx context.Context, key []byte, opts ...Option) (v T, found bool, c CausalContext, err error) {
	sibs, c, err := t.Store.Get(ctx, key, opts...)
	if err != nil || len(sibs) == 0 {
		return v, false, c, err
	}
	v, err = mergeSiblings(t.Codec, t.Merge, key, sibs)
	if err != nil {
		return v, false, CausalContext{}, err
	}
	return v, true, c, nil
}

// Modify runs Modify(ctx, t.Store, key, t.Codec, t.Merge, fn, opts...).
func (t Typed[T]) Modify(ctx context.Context, key []byte, fn func(cur T, found bool) (T, error), opts ...Option) (T, error) {
	return Modify(ctx, t.Store, key, t.Codec, t.Merge, fn, opts...)
}

// mergeSiblings decodes sibs and merges them into one value (one sibling
// is taken as it is).
func mergeSiblings[T any](codec Codec[T], merge Merge[T], key []byte, sibs []Sibling) (T, error) {
	var zero T
	vals, err := decodeAll(codec, sibs)
	if err != nil {
		return zero, fmt.Errorf("%w: key %q: %w", ErrResolve, key, err)
	}
	if len(vals) == 1 {
		return vals[0], nil
	}
	v, err := merge(vals)
	if err != nil {
		return zero, fmt.Errorf("%w: key %q: %w", ErrResolve, key, err)
	}
	return v, nil
}
