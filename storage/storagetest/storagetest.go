// Package storagetest implements the conformance suite every storage.Storage must pass (DESIGN §1, §4).
//
// An implementation's tests call Run, RunDurable when the data is meant to
// survive Close, and RunDamaged when it checksums its values:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) storage.Storage { return memory.New() })
//	}
//
// Each subtest opens a fresh Storage through open and closes it when the
// subtest ends, so open need not register a cleanup (it may: Close is
// idempotent). Subtests run in parallel with one another.
package storagetest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage"
)

// errStop is the error the suite's callbacks return to stop or refuse work.
var errStop = errors.New("storagetest: stop")

// Run checks the behaviour storage.Storage promises, on storages made by
// open. open is called once per subtest and must return an empty, open
// Storage; it may call t.Fatal.
func Run(t *testing.T, open func(t *testing.T) storage.Storage) {
	t.Helper()
	for _, tc := range []struct {
		name string
		test func(t *testing.T, s storage.Storage)
	}{
		{"Get_Absent_ReturnsNilNil", testGetAbsent},
		{"Update_CreateReplaceDelete", testCreateReplaceDelete},
		{"Update_SeesCurrentValue", testSeesCurrent},
		{"Update_DeleteAbsent_IsNoop", testDeleteAbsent},
		{"Update_EmptyValue_DistinctFromAbsent", testEmptyValue},
		{"Update_FnError_LeavesValueUnchanged", testFnError},
		{"Update_LargeValue", testLargeValue},
		{"Update_BinaryKeys", testBinaryKeys},
		{"EmptyKey_ReturnsErrEmptyKey", testEmptyKey},
		{"ForEach_ByteOrder", testForEachOrder},
		{"ForEach_PrefixFilter", testForEachPrefix},
		{"ForEach_StopsWithFnError", testForEachStop},
		{"ForEach_EmptyStorage", testForEachEmpty},
		{"Slices_CallerOwned", testCallerOwned},
		{"Concurrent_SameKey_AppliesEachOnce", testConcurrentSameKey},
		{"Concurrent_DifferentKeys", testConcurrentDifferentKeys},
		{"Concurrent_ReadersAndWriters", testConcurrentReadWrite},
		{"Close_ThenErrClosed", testClosed},
		{"UpdateBatch_AppliesInOrder", testBatchInOrder},
		{"DeletePrefix_DeletesOnlyThePrefix", testDeletePrefix},
		{"Batch_Closed_ErrClosed", testBatchClosed},
		{"UpdateStaged_StagesEachResultOnce", testStaged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			require.NotNil(t, s, "open returned a nil Storage")
			t.Cleanup(func() { _ = s.Close() })
			tc.test(t, s)
		})
	}
}

// put stores value under key, failing the test on error.
func put(t testing.TB, s storage.Storage, key, value string) {
	t.Helper()
	require.NoError(t, s.Update([]byte(key), func([]byte) ([]byte, error) {
		return []byte(value), nil
	}), "Update(%q)", key)
}

// get returns key's value as a string and whether it is present.
func get(t testing.TB, s storage.Storage, key string) (string, bool) {
	t.Helper()
	v, err := s.Get([]byte(key))
	require.NoError(t, err, "Get(%q)", key)
	return string(v), v != nil
}

// pair is one key and value seen by ForEach, copied out of the callback.
type pair struct{ Key, Value string }

// collect returns every pair ForEach visits under prefix, in visiting order.
func collect(t testing.TB, s storage.Storage, prefix string) []pair {
	t.Helper()
	var got []pair
	require.NoError(t, s.ForEach([]byte(prefix), func(k, v []byte) error {
		got = append(got, pair{string(k), string(v)})
		return nil
	}), "ForEach(%q)", prefix)
	return got
}

// increment is an Update fn adding one to a big-endian uint64 counter.
func increment(current []byte) ([]byte, error) {
	var n uint64
	if current != nil {
		if len(current) != 8 {
			return nil, fmt.Errorf("storagetest: counter has %d bytes, want 8", len(current))
		}
		n = binary.BigEndian.Uint64(current)
	}
	return binary.BigEndian.AppendUint64(nil, n+1), nil
}

// counter reads a counter written by increment.
func counter(t testing.TB, s storage.Storage, key string) uint64 {
	t.Helper()
	v, err := s.Get([]byte(key))
	require.NoError(t, err)
	require.Len(t, v, 8, "counter %q", key)
	return binary.BigEndian.Uint64(v)
}

func testGetAbsent(t *testing.T, s storage.Storage) {
	v, err := s.Get([]byte("absent"))
	require.NoError(t, err)
	require.Nil(t, v)
}

func testCreateReplaceDelete(t *testing.T, s storage.Storage) {
	put(t, s, "k", "v1")
	v, ok := get(t, s, "k")
	require.True(t, ok)
	require.Equal(t, "v1", v)

	put(t, s, "k", "v2")
	v, _ = get(t, s, "k")
	require.Equal(t, "v2", v)

	require.NoError(t, s.Update([]byte("k"), func([]byte) ([]byte, error) { return nil, nil }))
	_, ok = get(t, s, "k")
	require.False(t, ok, "a nil result must delete the key")
	require.Empty(t, collect(t, s, ""), "a deleted key must not be visited")
}

func testSeesCurrent(t *testing.T, s storage.Storage) {
	// fn may run on another goroutine, so it reports through errors, never
	// through require.
	require.NoError(t, s.Update([]byte("k"), func(cur []byte) ([]byte, error) {
		if cur != nil {
			return nil, fmt.Errorf("current = %q for an absent key, want nil", cur)
		}
		return []byte("a"), nil
	}))
	for _, want := range []string{"a", "ab", "abc"} {
		require.NoError(t, s.Update([]byte("k"), func(cur []byte) ([]byte, error) {
			if string(cur) != want {
				return nil, fmt.Errorf("current = %q, want %q", cur, want)
			}
			return append(slices.Clone(cur), want[len(want)-1]+1), nil
		}))
	}
	v, _ := get(t, s, "k")
	require.Equal(t, "abcd", v)
}

func testDeleteAbsent(t *testing.T, s storage.Storage) {
	require.NoError(t, s.Update([]byte("nope"), func([]byte) ([]byte, error) { return nil, nil }))
	_, ok := get(t, s, "nope")
	require.False(t, ok)
}

func testEmptyValue(t *testing.T, s storage.Storage) {
	require.NoError(t, s.Update([]byte("k"), func([]byte) ([]byte, error) { return []byte{}, nil }))
	v, err := s.Get([]byte("k"))
	require.NoError(t, err)
	require.NotNil(t, v, "an empty value must read back non-nil, unlike an absent key")
	require.Empty(t, v)
	require.NoError(t, s.Update([]byte("k"), func(cur []byte) ([]byte, error) {
		if cur == nil || len(cur) != 0 {
			return nil, fmt.Errorf("fn saw a stored empty value as %#v, want []byte{}", cur)
		}
		return []byte{}, nil
	}))
	require.Equal(t, []pair{{"k", ""}}, collect(t, s, ""))
}

func testFnError(t *testing.T, s storage.Storage) {
	put(t, s, "k", "keep")
	wrapped := fmt.Errorf("refused: %w", errStop)
	err := s.Update([]byte("k"), func([]byte) ([]byte, error) { return []byte("lost"), wrapped })
	require.ErrorIs(t, err, errStop)
	v, _ := get(t, s, "k")
	require.Equal(t, "keep", v)

	err = s.Update([]byte("new"), func([]byte) ([]byte, error) { return []byte("lost"), errStop })
	require.ErrorIs(t, err, errStop)
	_, ok := get(t, s, "new")
	require.False(t, ok, "a failed fn must not create the key")
}

func testLargeValue(t *testing.T, s storage.Storage) {
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	require.NoError(t, s.Update([]byte("big"), func([]byte) ([]byte, error) { return big, nil }))
	v, err := s.Get([]byte("big"))
	require.NoError(t, err)
	require.True(t, bytes.Equal(big, v), "4 MiB value changed on the way through")
}

func testBinaryKeys(t *testing.T, s storage.Storage) {
	keys := []string{"\x00", "\x00\x00", "\x00\xff", "\xff", "\xff\xff\xff", "a\x00b"}
	for i, k := range keys {
		put(t, s, k, fmt.Sprint(i))
	}
	for i, k := range keys {
		v, ok := get(t, s, k)
		require.True(t, ok, "key %q", k)
		require.Equal(t, fmt.Sprint(i), v)
	}
}

func testEmptyKey(t *testing.T, s storage.Storage) {
	for _, key := range [][]byte{nil, {}} {
		v, err := s.Get(key)
		require.ErrorIs(t, err, storage.ErrEmptyKey)
		require.Nil(t, v)
		err = s.Update(key, func([]byte) ([]byte, error) {
			t.Error("fn called for an empty key")
			return []byte("x"), nil
		})
		require.ErrorIs(t, err, storage.ErrEmptyKey)
	}
	require.Empty(t, collect(t, s, ""))
}

func testForEachOrder(t *testing.T, s storage.Storage) {
	keys := []string{"b", "a", "ab", "a\x00", "\x00", "\xff", "aa", "b\xff", "ba", "A", "0"}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	for _, k := range keys {
		put(t, s, k, "v"+k)
	}
	slices.Sort(keys) // Go string order is byte order
	var want []pair
	for _, k := range keys {
		want = append(want, pair{k, "v" + k})
	}
	require.Equal(t, want, collect(t, s, ""))
}

func testForEachPrefix(t *testing.T, s storage.Storage) {
	for _, k := range []string{"a", "ab", "ab\x00", "abc", "abd", "ac", "b", "ab\xff", "ab\xff\xff", "ac\x00"} {
		put(t, s, k, k)
	}
	for prefix, want := range map[string][]string{
		"ab":     {"ab", "ab\x00", "abc", "abd", "ab\xff", "ab\xff\xff"},
		"ab\xff": {"ab\xff", "ab\xff\xff"},
		"ac":     {"ac", "ac\x00"},
		"b":      {"b"},
		"abcd":   nil,
		"0":      nil,
		"c":      nil,
		"\xff":   nil,
	} {
		var keys []string
		for _, p := range collect(t, s, prefix) {
			require.Equal(t, p.Key, p.Value)
			keys = append(keys, p.Key)
		}
		require.Equal(t, want, keys, "prefix %q", prefix)
	}
}

func testForEachStop(t *testing.T, s storage.Storage) {
	for _, k := range []string{"a", "b", "c", "d"} {
		put(t, s, k, k)
	}
	var seen []string
	err := s.ForEach(nil, func(k, _ []byte) error {
		seen = append(seen, string(k))
		if string(k) == "b" {
			return fmt.Errorf("at b: %w", errStop)
		}
		return nil
	})
	require.ErrorIs(t, err, errStop)
	require.Equal(t, []string{"a", "b"}, seen, "ForEach must stop at the first error")
}

func testForEachEmpty(t *testing.T, s storage.Storage) {
	calls := 0
	require.NoError(t, s.ForEach(nil, func(_, _ []byte) error { calls++; return nil }))
	require.NoError(t, s.ForEach([]byte("x"), func(_, _ []byte) error { calls++; return nil }))
	require.Zero(t, calls)
}

func testCallerOwned(t *testing.T, s storage.Storage) {
	key := []byte("key")
	require.NoError(t, s.Update(key, func([]byte) ([]byte, error) { return []byte("value"), nil }))
	key[0] = 'X' // the caller owns key once Update returns

	v, err := s.Get([]byte("key"))
	require.NoError(t, err)
	require.Equal(t, "value", string(v), "Update must not keep the caller's key")
	copy(v, "junk")
	v2, _ := get(t, s, "key")
	require.Equal(t, "value", v2, "modifying Get's result must not change the stored value")
	_, ok := get(t, s, "Xey")
	require.False(t, ok)

	prefix := []byte("k")
	require.NoError(t, s.ForEach(prefix, func(_, _ []byte) error { return nil }))
	prefix[0] = 'X'
	require.Equal(t, []pair{{"key", "value"}}, collect(t, s, "k"))
}

func testConcurrentSameKey(t *testing.T, s storage.Storage) {
	const goroutines, each = 32, 20
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, goroutines*each)
	for range goroutines {
		wg.Go(func() {
			<-start
			for range each {
				errs <- s.Update([]byte("counter"), increment)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, uint64(goroutines*each), counter(t, s, "counter"),
		"every concurrent Update must apply exactly once")
}

func testConcurrentDifferentKeys(t *testing.T, s storage.Storage) {
	const goroutines, each = 32, 10
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, goroutines*each*2)
	for g := range goroutines {
		wg.Go(func() {
			<-start
			for i := range each {
				key := fmt.Sprintf("g%02d/%02d", g, i)
				errs <- s.Update([]byte(key), func([]byte) ([]byte, error) { return []byte(key), nil })
				errs <- s.Update(fmt.Appendf(nil, "n%02d", g), increment)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	got := collect(t, s, "g")
	require.Len(t, got, goroutines*each)
	for _, p := range got {
		require.Equal(t, p.Key, p.Value)
	}
	for g := range goroutines {
		require.Equal(t, uint64(each), counter(t, s, fmt.Sprintf("n%02d", g)))
	}
}

func testConcurrentReadWrite(t *testing.T, s storage.Storage) {
	const writers, readers, each = 8, 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each+readers*each*2)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("k%d", (w+i)%5)
				errs <- s.Update([]byte(key), func(cur []byte) ([]byte, error) {
					return append(slices.Clone(cur), 'x'), nil
				})
			}
		})
	}
	for r := range readers {
		wg.Go(func() {
			for i := range each {
				v, err := s.Get(fmt.Appendf(nil, "k%d", (r+i)%5))
				if err == nil && bytes.ContainsFunc(v, func(c rune) bool { return c != 'x' }) {
					err = fmt.Errorf("read torn value %q", v)
				}
				errs <- err
				errs <- s.ForEach([]byte("k"), func(k, v []byte) error {
					if len(v) == 0 || bytes.ContainsFunc(v, func(c rune) bool { return c != 'x' }) {
						return fmt.Errorf("ForEach saw torn value %q=%q", k, v)
					}
					return nil
				})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	total := 0
	for _, p := range collect(t, s, "k") {
		total += len(p.Value)
	}
	require.Equal(t, writers*each, total, "every append must land exactly once")
}

func testClosed(t *testing.T, s storage.Storage) {
	put(t, s, "k", "v")
	require.NoError(t, s.Close())

	v, err := s.Get([]byte("k"))
	require.ErrorIs(t, err, storage.ErrClosed)
	require.Nil(t, v)
	err = s.Update([]byte("k"), func([]byte) ([]byte, error) {
		t.Error("fn called after Close")
		return nil, nil
	})
	require.ErrorIs(t, err, storage.ErrClosed)
	err = s.ForEach(nil, func(_, _ []byte) error {
		t.Error("ForEach fn called after Close")
		return nil
	})
	require.ErrorIs(t, err, storage.ErrClosed)
	require.NoError(t, s.Close(), "Close must be idempotent")
	require.NoError(t, s.Close(), "Close must be idempotent")
}
