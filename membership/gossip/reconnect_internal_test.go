// Table tests of the reconnect loop's choice of targets and its backoff (§4.8), no network.

package gossip

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// keys returns the keys of targets.
func keys(ts []reconnectTarget) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.key)
	}
	return out
}

func TestRetrier_BacksOffToEveryEighthRound(t *testing.T) {
	var r retrier
	dead := []reconnectTarget{{key: "member a", addrs: []string{"127.0.0.1:1"}}}
	var tried []int
	for round := 1; round <= 40; round++ {
		if len(r.next(dead, maxReconnectsPerRound)) > 0 {
			tried = append(tried, round)
		}
	}
	require.Equal(t, []int{1, 2, 4, 8, 16, 24, 32, 40}, tried)
}

func TestRetrier_StartsOverOnNewAddressOrReturn(t *testing.T) {
	var r retrier
	a := reconnectTarget{key: "member a", addrs: []string{"127.0.0.1:1"}}
	for range 10 {
		r.next([]reconnectTarget{a}, 1)
	}
	require.Empty(t, r.next([]reconnectTarget{a}, 1), "backed off")

	moved := reconnectTarget{key: "member a", addrs: []string{"127.0.0.1:2"}}
	require.Equal(t, []string{"member a"}, keys(r.next([]reconnectTarget{moved}, 1)), "a new address is tried at once")
	require.Equal(t, []string{"member a"}, keys(r.next([]reconnectTarget{moved}, 1)))
	require.Empty(t, r.next([]reconnectTarget{moved}, 1))

	require.Empty(t, r.next(nil, 1), "alive again")
	require.Len(t, r.state, 0, "its backoff is forgotten")
	require.Equal(t, []string{"member a"}, keys(r.next([]reconnectTarget{moved}, 1)), "dead again: tried at once")
}

func TestRetrier_BoundsARoundAndRotates(t *testing.T) {
	var r retrier
	var all []reconnectTarget
	for _, k := range []string{"e", "d", "c", "b", "a"} {
		all = append(all, reconnectTarget{key: k, addrs: []string{k}})
	}
	require.Equal(t, []string{"a", "b", "c"}, keys(r.next(all, 3)))
	require.Equal(t, []string{"d", "e", "a"}, keys(r.next(all, 3)), "never tried first, then tried longest ago")
	seen := map[string]int{}
	for range 40 {
		picked := r.next(all, 3)
		require.LessOrEqual(t, len(picked), 3)
		for _, k := range keys(picked) {
			seen[k]++
		}
	}
	require.Len(t, seen, 5, "every target gets its turn")
}

func TestReconnectTargets(t *testing.T) {
	g := &Gossip{id: "me", self: entry{ID: "me", GossipAddr: "127.0.0.1:1"}}
	g.view.merge(entry{ID: "me", Incarnation: 1, GossipAddr: "127.0.0.1:1"})
	g.view.setAlive("me", 1)
	g.view.merge(entry{ID: "up", Incarnation: 1, GossipAddr: "127.0.0.1:2"})
	g.view.setAlive("up", 1)
	g.view.merge(entry{ID: "down", Incarnation: 1, GossipAddr: "127.0.0.1:3"})
	g.view.merge(entry{ID: "gone", Incarnation: 1, GossipAddr: "127.0.0.1:4", Left: true})
	g.view.merge(entry{ID: "legacy", Incarnation: 1})                           // no gossip address known
	g.view.merge(entry{ID: "stale", Incarnation: 1, GossipAddr: "127.0.0.1:1"}) // this node's address now
	g.seeds = []string{"127.0.0.1:1", "127.0.0.1:9"}

	require.Equal(t, []reconnectTarget{{key: "member down", addrs: []string{"127.0.0.1:3"}}}, g.reconnectTargets(),
		"seeds only while no other node is alive")

	g.view.setDead("up")
	got := g.reconnectTargets()
	require.ElementsMatch(t, []reconnectTarget{
		{key: "member down", addrs: []string{"127.0.0.1:3"}},
		{key: "member up", addrs: []string{"127.0.0.1:2"}},
		{key: "seeds", addrs: []string{"127.0.0.1:9"}},
	}, got, "alone: the seeds too, without this node's own address")
}
