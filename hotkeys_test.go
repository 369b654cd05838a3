// hotkeys_test.go: the Space-Saving sketch behind Stats.HotKeys.
package dynamo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// The sketch finds the heavy keys of a stream with many more distinct keys
// than counters, and its bounds hold: Gets+Writes <= true count <=
// Gets+Writes+Error for every key it reports.
func TestHotKeys_FindsHeavyKeysWithinBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var h hotKeys
		truth := map[string][2]int64{} // gets, writes
		rng := rand.New(rand.NewPCG(3, 4))
		for i := range 20_000 {
			var k string
			switch r := rng.IntN(100); {
			case r < 20:
				k = "hot-a"
			case r < 30:
				k = "hot-b"
			case r < 35:
				k = "hot-c"
			default:
				k = fmt.Sprintf("cold-%d", rng.IntN(5000))
			}
			write := i%4 == 0
			h.record([]byte(k), write)
			c := truth[k]
			if write {
				c[1]++
			} else {
				c[0]++
			}
			truth[k] = c
			if i%997 == 0 {
				requireHeap(t, h.cur)
			}
		}
		requireHeap(t, h.cur)
		top := h.top()
		require.Len(t, top, hotKeyTop)
		require.Equal(t, []string{"hot-a", "hot-b", "hot-c"}, []string{string(top[0].Key), string(top[1].Key), string(top[2].Key)})
		for _, hk := range top {
			tc := truth[string(hk.Key)]
			require.LessOrEqual(t, hk.Gets, tc[0], "%s", hk.Key)
			require.LessOrEqual(t, hk.Writes, tc[1], "%s", hk.Key)
			require.LessOrEqual(t, tc[0]+tc[1], hk.Gets+hk.Writes+hk.Error, "%s", hk.Key)
		}
		// A key above 1/hotKeySlots of the stream is counted almost exactly:
		// it never lost its counter.
		a := truth["hot-a"]
		require.InDelta(t, float64(a[0]+a[1]), float64(top[0].Gets+top[0].Writes), float64(top[0].Error)+1)
	})
}

// Stats reports a key's first hotKeyPrefix bytes and says it cut them.
func TestHotKeys_LongKeysTruncated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var h hotKeys
		long := strings.Repeat("k", 1000)
		h.record([]byte(long), false)
		h.record([]byte("short"), true)
		h.record([]byte("short"), true)
		top := h.top()
		require.Len(t, top, 2)
		require.Equal(t, HotKey{Key: []byte("short"), Writes: 2}, top[0])
		require.Equal(t, HotKey{Key: []byte(long[:hotKeyPrefix]), Truncated: true, Gets: 1}, top[1])
	})
}

// Counts cover the current window and the one before: a key that cooled
// off leaves within two windows.
func TestHotKeys_Windows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var h hotKeys
		h.record([]byte("old"), false)
		time.Sleep(hotKeyWindow + time.Second)
		h.record([]byte("new"), false)
		require.ElementsMatch(t, []string{"old", "new"}, hotNames(h.top()))
		time.Sleep(hotKeyWindow)
		require.Equal(t, []string{"new"}, hotNames(h.top()))
		time.Sleep(2 * hotKeyWindow)
		require.Empty(t, h.top())
	})
}

func hotNames(hks []HotKey) []string {
	var out []string
	for _, hk := range hks {
		out = append(out, string(hk.Key))
	}
	return out
}

// A Store's Stats show the keys its callers asked for, Gets and writes
// apart.
func TestStats_HotKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 3, func(cfg *Config) { cfg.AntiEntropy.Interval = -1 })
		s := c.stores[0]
		for range 3 {
			put(t, s, "w", "v", Context{})
		}
		for range 5 {
			get(t, s, "r")
		}
		require.NoError(t, s.Delete(context.Background(), []byte("w"), Context{}))
		require.Equal(t, []HotKey{{Key: []byte("r"), Gets: 5}, {Key: []byte("w"), Writes: 4}}, s.Stats().HotKeys)
		require.Empty(t, c.stores[1].Stats().HotKeys, "only the node the callers asked counts")
	})
}

// requireHeap checks g's counters form a min-heap by estimate and its index
// names each key's place.
func requireHeap(t *testing.T, g *hotGen) {
	t.Helper()
	require.Len(t, g.at, len(g.heap))
	for i, e := range g.heap {
		require.Equal(t, i, g.at[e.key], "index of %s", e.key)
		if i > 0 {
			require.LessOrEqual(t, g.heap[(i-1)/2].total(), e.total(), "heap order at %d", i)
		}
	}
}
