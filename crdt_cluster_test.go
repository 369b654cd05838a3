// crdt_cluster_test.go: the convergent types on an in-process cluster in
// fake time (§4.4, §4.6, §4.7, §6.1): concurrent writers through one
// coordinator, removals that hold, adds that win, hinted handoff, deletes and
// purges, counters that count once, and last-writer-wins registers.
package dynamo

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// concurrently runs the updates at once and waits for them: each reads the
// key, then waits until all have read before it builds its write, so no
// write's context covers another's. Each runs without retries.
func concurrently(t *testing.T, updates ...func(sync func()) error) {
	t.Helper()
	var read sync.WaitGroup
	read.Add(len(updates))
	barrier := func() { read.Done(); read.Wait() }
	errs := make([]error, len(updates))
	var wg sync.WaitGroup
	for i, u := range updates {
		wg.Go(func() { errs[i] = u(barrier) })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
}

// setUpdate is an UpdateSet through s that calls barrier after its read.
func setUpdate(s *Store, key string, change func(*ORSet[string])) func(func()) error {
	return func(barrier func()) error {
		_, err := UpdateSet(context.Background(), s, []byte(key), func(set *ORSet[string]) error {
			barrier()
			change(set)
			return nil
		}, WithRetries(0))
		return err
	}
}

func addTo(items ...string) func(*ORSet[string])  { return func(s *ORSet[string]) { s.Add(items...) } }
func removeFrom(item string) func(*ORSet[string]) { return func(s *ORSet[string]) { s.Remove(item) } }

func readSet(t *testing.T, s *Store, key string, opts ...Option) []string {
	t.Helper()
	set, err := GetSet[string](context.Background(), s, []byte(key), opts...)
	require.NoError(t, err)
	return set.Elements()
}

// coordinator returns the cluster index of key's first primary, which
// coordinates the writes made through it.
func (c *testCluster) coordinator(key string) int {
	return indexOf(c.stores[0].PreferenceList([]byte(key), 1)[0].ID)
}

// The hard part of client-side OR-sets: two updates in one process that
// read the same state and write through the same coordinator. Their dots are
// A:n and A:n+1 from one actor, and the second must not be taken to have
// seen the first, or its merge would drop the first one's add.
func TestUpdateSet_ConcurrentUpdatesThroughOneCoordinator(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, nil)
		key := "cart"
		co := c.stores[c.coordinator(key)]
		concurrently(t, setUpdate(co, key, addTo("book")))
		concurrently(t,
			setUpdate(co, key, addTo("pen")),
			setUpdate(co, key, addTo("ink")),
		)
		st, err := co.localRead([]byte(key))
		require.NoError(t, err)
		require.Len(t, st.Siblings, 2, "the two writes are siblings")
		require.Equal(t, st.Siblings[0].Dot.Actor, st.Siblings[1].Dot.Actor, "minted by one actor")
		for i := range c.stores {
			require.Equal(t, []string{"book", "ink", "pen"}, readSet(t, c.stores[i], key, WithR(3)))
		}
	})
}

// §6.1 with an OR-set: a removal concurrent with an add of another item
// holds, and an add concurrent with a removal of the same item wins.
func TestUpdateSet_RemoveHolds_ConcurrentAddWins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, nil)
		key := "cart"
		concurrently(t, setUpdate(c.stores[0], key, addTo("book", "lamp", "pen")))
		concurrently(t,
			setUpdate(c.stores[1], key, removeFrom("book")),
			setUpdate(c.stores[2], key, addTo("cup")),
		)
		require.Equal(t, []string{"cup", "lamp", "pen"}, readSet(t, c.stores[0], key, WithR(3)), "the removed book stays removed")

		concurrently(t,
			setUpdate(c.stores[0], key, removeFrom("pen")),
			setUpdate(c.stores[1], key, addTo("pen")),
		)
		require.Equal(t, []string{"cup", "lamp", "pen"}, readSet(t, c.stores[2], key, WithR(3)), "the concurrent add wins")

		// A Remove of what a concurrent write re-added (and so replaced)
		// removes only what it saw.
		concurrently(t,
			setUpdate(c.stores[0], key, addTo("lamp")),
			setUpdate(c.stores[1], key, removeFrom("lamp")),
			setUpdate(c.stores[2], key, removeFrom("cup")),
		)
		require.Equal(t, []string{"lamp", "pen"}, readSet(t, c.stores[2], key, WithR(3)))

		// One more write collapses the siblings into one value.
		_, err := UpdateSet(context.Background(), c.stores[0], []byte(key), func(*ORSet[string]) error { return nil }, WithR(3))
		require.NoError(t, err)
		st, err := c.stores[0].localRead([]byte(key))
		require.NoError(t, err)
		require.Len(t, st.Siblings, 1)
	})
}

// §4.6: dots are the siblings' identities, so set updates written to a
// fallback as hints resolve the same after handoff, on every replica.
func TestUpdateSet_ThroughHintedHandoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 5, nil)
		key := "cart"
		pref := c.stores[0].PreferenceList([]byte(key), 5)
		p1, p3, f1 := indexOf(pref[0].ID), indexOf(pref[2].ID), indexOf(pref[3].ID)
		concurrently(t, setUpdate(c.stores[p1], key, addTo("book", "pen")))
		synctest.Wait()
		c.down(pref[2].ID)
		concurrently(t,
			setUpdate(c.stores[p1], key, removeFrom("book")),
			setUpdate(c.stores[p1], key, addTo("lamp")),
		)
		synctest.Wait()
		require.Positive(t, pendingFor(c.stores[f1], pref[2].ID), "the fallback holds hints for the owner")
		require.Equal(t, []string{"lamp", "pen"}, readSet(t, c.stores[p1], key))

		c.upAll()
		untilFake(t, 10*time.Second, func() bool { return pendingFor(c.stores[f1], pref[2].ID) == 0 }, "hints delivered")
		want, err := c.stores[p1].localRead([]byte(key))
		require.NoError(t, err)
		got, err := c.stores[p3].localRead([]byte(key))
		require.NoError(t, err)
		require.True(t, sameVersion(want, got), "the owner holds the same siblings, same dots")
		for i := range c.stores {
			require.Equal(t, []string{"lamp", "pen"}, readSet(t, c.stores[i], key, WithR(3)))
		}
	})
}

// §4.7: Store.Delete of a set key removes what no concurrent write holds; a
// write concurrent with the Delete keeps what it held (the paper's union
// behaviour, documented in crdt.go). A purged key starts again from
// nothing, under fresh actor epochs.
func TestUpdateSet_DeleteAndPurge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) {
			cfg.TombstoneGrace = time.Minute
			cfg.AntiEntropy.Interval = -1 // rounds run by hand
		})
		ctx := context.Background()
		key := "cart"
		all := WithW(3)
		_, err := UpdateSet(ctx, c.stores[0], []byte(key), func(s *ORSet[string]) error { s.Add("x", "y"); return nil }, all)
		require.NoError(t, err)
		_, cx := get(t, c.stores[0], key)
		require.NoError(t, c.stores[0].Delete(ctx, []byte(key), cx, all))
		require.Empty(t, readSet(t, c.stores[1], key))
		_, err = UpdateSet(ctx, c.stores[1], []byte(key), func(s *ORSet[string]) error { s.Add("z"); return nil }, all)
		require.NoError(t, err)
		require.Equal(t, []string{"z"}, readSet(t, c.stores[2], key, WithR(3)), "what the Delete saw is gone")

		// A write that read before the Delete and writes after it.
		_, cx = get(t, c.stores[0], key)
		_, err = UpdateSet(ctx, c.stores[1], []byte(key), func(s *ORSet[string]) error {
			require.NoError(t, c.stores[0].Delete(ctx, []byte(key), cx, all))
			s.Add("cup")
			return nil
		}, all, WithRetries(0))
		require.NoError(t, err)
		require.Equal(t, []string{"cup", "z"}, readSet(t, c.stores[2], key, WithR(3)), "a write concurrent with the Delete keeps what it held")

		// Delete it for good, and let the tombstone be purged.
		_, cx = get(t, c.stores[0], key, WithR(3))
		require.NoError(t, c.stores[0].Delete(ctx, []byte(key), cx, all))
		before, err := GetSet[string](ctx, c.stores[0], []byte(key), WithR(3))
		require.NoError(t, err)
		advance(2 * time.Minute)
		purged := 0
		for _, s := range c.stores {
			purged += s.purgeTombstones(ctx)
		}
		require.Equal(t, 1, purged)
		_, err = UpdateSet(ctx, c.stores[2], []byte(key), func(s *ORSet[string]) error { s.Add("new"); return nil }, all)
		require.NoError(t, err)
		after, err := GetSet[string](ctx, c.stores[0], []byte(key), WithR(3))
		require.NoError(t, err)
		require.Equal(t, []string{"new"}, after.Elements())
		for _, e := range after.clock.vv {
			require.Zero(t, before.clock.vv.get(e.Actor), "actor %s was in use before the purge: epochs must be fresh", e.Actor)
		}
	})
}

// Every increment counts once: concurrent updates through one coordinator
// and through every node, and a Delete resets what it saw.
func TestUpdateCounter_CountsEveryUpdateOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, nil)
		ctx := context.Background()
		key := "hits"
		inc := func(s *Store, by int64) func(func()) error {
			return func(barrier func()) error {
				_, err := UpdateCounter(ctx, s, []byte(key), func(cnt *Counter) error { barrier(); cnt.Add(by); return nil }, WithRetries(0))
				return err
			}
		}
		co := c.stores[c.coordinator(key)]
		concurrently(t, inc(co, 10), inc(co, 5), inc(co, -2))
		concurrently(t, inc(c.stores[0], 1), inc(c.stores[1], 1), inc(c.stores[2], 1))
		var wg sync.WaitGroup
		errs := make([]error, 30)
		for i := range errs {
			wg.Go(func() {
				_, errs[i] = UpdateCounter(ctx, c.stores[i%3], []byte(key), func(cnt *Counter) error { cnt.Add(1); return nil })
			})
		}
		wg.Wait()
		require.NoError(t, errors.Join(errs...))
		for i := range c.stores {
			cnt, err := GetCounter(ctx, c.stores[i], []byte(key), WithR(3))
			require.NoError(t, err)
			require.Equal(t, int64(10+5-2+3+30), cnt.Value())
		}
		_, cx := get(t, c.stores[0], key, WithR(3))
		require.NoError(t, c.stores[0].Delete(ctx, []byte(key), cx))
		got, err := UpdateCounter(ctx, c.stores[1], []byte(key), func(cnt *Counter) error { cnt.Add(7); return nil }, WithR(3))
		require.NoError(t, err)
		require.Equal(t, int64(7), got.Value())
	})
}

// A failed write of a counter may have been stored, so UpdateCounter does
// not repeat it; a set update is idempotent and is retried.
func TestUpdate_RetriesOnlyIdempotentWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, nil)
		ctx := context.Background()
		key := []byte("k")
		c.down(c.stores[0].PreferenceList(key, 3)[2].ID)
		var setCalls, counterCalls atomic.Int32
		_, err := UpdateSet(ctx, c.stores[0], key, func(s *ORSet[string]) error { setCalls.Add(1); s.Add("x"); return nil }, WithW(3), WithPrimariesOnly())
		require.ErrorIs(t, err, ErrWriteQuorum)
		_, err = UpdateCounter(ctx, c.stores[0], key, func(cnt *Counter) error { counterCalls.Add(1); cnt.Add(1); return nil }, WithW(3), WithPrimariesOnly())
		require.ErrorIs(t, err, ErrWriteQuorum)
		require.Equal(t, int32(3), setCalls.Load(), "a set update is tried 1+2 times")
		require.Equal(t, int32(1), counterCalls.Load(), "a counter update is not repeated after a failed write")
	})
}

// Among concurrent writes the latest timestamp wins; a write that read the
// register replaces it whatever the clocks say; a Delete that wins reads as
// not found.
func TestUpdateRegister_LastWriterWins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) {
			skew := time.Duration(cfg.NodeID[1]-'0') * time.Second // n2's clock runs 2s ahead of n0's
			cfg.Clock = func() time.Time { return time.Now().Add(skew) }
		})
		ctx := context.Background()
		key := "owner"
		codec := MsgpackCodec[string]{}
		set := func(s *Store, v string) func(func()) error {
			return func(barrier func()) error {
				_, err := UpdateRegister(ctx, s, []byte(key), codec, func(Register[string]) (string, error) { barrier(); return v, nil }, WithRetries(0))
				return err
			}
		}
		concurrently(t, set(c.stores[2], "ahead"), set(c.stores[0], "behind"))
		r, err := GetRegister(ctx, c.stores[1], []byte(key), codec, WithR(3))
		require.NoError(t, err)
		require.True(t, r.Found)
		require.Equal(t, "ahead", r.Value, "the later timestamp wins")

		v, err := UpdateRegister(ctx, c.stores[0], []byte(key), codec, func(cur Register[string]) (string, error) {
			require.Equal(t, "ahead", cur.Value)
			return "next", nil
		}, WithR(3))
		require.NoError(t, err)
		require.Equal(t, "next", v)
		r, err = GetRegister(ctx, c.stores[2], []byte(key), codec, WithR(3))
		require.NoError(t, err)
		require.Equal(t, "next", r.Value, "a causally later write wins over an earlier timestamp")

		_, cx := get(t, c.stores[0], key, WithR(3))
		require.NoError(t, c.stores[2].Delete(ctx, []byte(key), cx))
		r, err = GetRegister(ctx, c.stores[1], []byte(key), codec, WithR(3))
		require.NoError(t, err)
		require.False(t, r.Found)
		require.Empty(t, r.Value)
	})
}

// A key holding another type's value, or a plain value, is an ErrResolve,
// and nothing is written.
func TestCRDT_WrongType_ErrResolve(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, nil)
		ctx := context.Background()
		put(t, c.stores[0], "plain", "hello", Context{})
		_, err := GetSet[string](ctx, c.stores[0], []byte("plain"))
		require.ErrorIs(t, err, ErrResolve)
		_, err = UpdateSet(ctx, c.stores[0], []byte("plain"), func(*ORSet[string]) error { return nil })
		require.ErrorIs(t, err, ErrResolve)
		require.Equal(t, []string{"hello"}, c.local(0, "plain"), "nothing written")

		_, err = UpdateCounter(ctx, c.stores[0], []byte("n"), func(cnt *Counter) error { cnt.Add(1); return nil })
		require.NoError(t, err)
		_, err = GetSet[string](ctx, c.stores[0], []byte("n"))
		require.ErrorIs(t, err, ErrResolve)
		require.ErrorContains(t, err, "type tag 2, want 1 (an ORSet)")
		_, err = GetRegister(ctx, c.stores[0], []byte("n"), MsgpackCodec[int]{})
		require.ErrorIs(t, err, ErrResolve)

		boom := errors.New("boom")
		_, err = UpdateSet(ctx, c.stores[0], []byte("s"), func(*ORSet[string]) error { return boom })
		require.ErrorIs(t, err, boom)
		require.Empty(t, c.local(0, "s"))
	})
}
