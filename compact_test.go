// compact_test.go: DESIGN §2 a key's vector stays bounded through churn of
// node identities: dead entries fold away once every primary held them dead
// for the grace period, and never earlier (issue 12 item 3).
package dynamo

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage/memory"
)

// compactCluster is a 3-node cluster whose background anti-entropy rounds
// (which fold vectors) run every 250ms of fake time, with a 1s grace.
func compactCluster(t *testing.T) *testCluster {
	return newTestCluster(t, 3, func(cfg *Config) {
		cfg.AntiEntropy.Interval = 250 * time.Millisecond
		cfg.TombstoneGrace = time.Second
	})
}

// replace restarts node i on an empty disk (a new incarnation) and lets it
// pull what it owns.
func (c *testCluster) replace(i int) {
	c.t.Helper()
	c.stop(i)
	c.start(i, memory.New())
	require.NoError(c.t, c.stores[i].TransferRound(context.Background()))
}

// Reference: issue 12 "growth from legitimate churn": each time a replica of
// a key restarts on an empty disk and then writes the key, the key's vector
// gains an entry (the new incarnation). Before, after about 158 such
// replacements the context Get returned passed Limits.MaxContextSize and
// the key took only blind writes. Now dead incarnations fold away: after
// 240 replacements the key still takes context writes, its context stays
// small, and no write was lost.
func TestCompaction_ManyReplacements_KeyStaysWritable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := compactCluster(t)
		ctx := context.Background()
		codec := MsgpackCodec[[]int]{}
		key := []byte("cart")
		const replacements = 240
		widest := 0
		for i := range replacements {
			n := i % 3
			c.replace(n)
			_, err := Modify(ctx, c.stores[n], key, codec, Union[int], func(cur []int, _ bool) ([]int, error) {
				return append(cur, i), nil
			})
			require.NoError(t, err, "replacement %d: the key still takes context writes", i)
			_, cx, err := c.stores[n].Get(ctx, key, WithR(3))
			require.NoError(t, err)
			widest = max(widest, len(cx.vv))
			time.Sleep(2 * time.Second) // fake time: the grace passes, rounds fold
			synctest.Wait()
		}
		sibs, cx, err := c.stores[0].Get(ctx, key, WithR(3))
		require.NoError(t, err)
		require.Len(t, sibs, 1)
		got, err := codec.Unmarshal(sibs[0].Value)
		require.NoError(t, err)
		require.Len(t, got, replacements, "no write was lost")
		t.Logf("after %d replacements: the context holds %d entries (%d bytes); the widest was %d entries",
			replacements, len(cx.vv), cx.encodedSize(), widest)
		require.LessOrEqual(t, widest, 8, "the vector stays bounded")
	})
}

// Folding never takes an entry with a live sibling, nor the actor a primary
// would mint the key's next version with, and waits for every primary to
// have held the entry dead for the grace period.
func TestCompaction_FoldsOnlyDeadEntriesAfterGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) {
			cfg.AntiEntropy.Interval = -1 // the test runs the rounds
			cfg.TombstoneGrace = time.Minute
		})
		ctx := context.Background()
		put(t, c.stores[0], "k", "a", Context{}, WithW(3))
		c.stop(0)
		c.start(0, c.storages[0])                          // a new run: n0's entry is dead now
		put(t, c.stores[0], "k", "b", Context{}, WithW(3)) // n0's new entry
		_, cx := get(t, c.stores[0], "k", WithR(3))
		put(t, c.stores[1], "k", "c", cx, WithW(3)) // n0's new entry has no live sibling, but n0 mints with it
		before, err := c.stores[0].localRead([]byte("k"))
		require.NoError(t, err)
		require.Len(t, before.VV, 3, vcString(before))
		live := c.stores[0].ownActor([]byte("k"), before)
		require.NotEmpty(t, live)

		first := indexOf(c.stores[0].PreferenceList([]byte("k"), 3)[0].ID)
		fp := c.stores[first]
		require.Zero(t, fp.compactRound(ctx), "first sight: nothing folds yet")
		time.Sleep(30 * time.Second)
		require.Zero(t, fp.compactRound(ctx), "half the grace: nothing folds yet")
		time.Sleep(31 * time.Second)
		require.Equal(t, 1, fp.compactRound(ctx), "the grace passed")

		st := requireConverged(t, c, "k")
		require.Len(t, st.VV, 2, "the dead entry folded: %s", vcString(st))
		require.Equal(t, before.VV.get(live), st.VV.get(live), "the live actor's entry stays")
		require.Equal(t, []string{"c"}, liveValues(st))
		_, cx = get(t, c.stores[0], "k", WithR(3))
		put(t, c.stores[0], "k", "d", cx)
		after, err := c.stores[0].localRead([]byte("k"))
		require.NoError(t, err)
		require.Len(t, after.VV, 2, "n0 minted with its live entry: %s", vcString(after))
		vals, _ := get(t, c.stores[2], "k", WithR(3))
		require.Equal(t, []string{"d"}, vals)
	})
}
