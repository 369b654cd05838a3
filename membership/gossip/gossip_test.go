// Tests of Gossip on real memberlist over 127.0.0.1 (§4.8): join, leave, failure, restart, removal.

package gossip_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/membership"
	"github.com/dynamo-kv/dynamo/membership/gossip"
)

const (
	// waitFor bounds every wait on a cluster condition; the local profile
	// detects a failure in about 1 to 2 s.
	waitFor = 15 * time.Second
	// tick is how often a wait re-checks its condition.
	tick = 20 * time.Millisecond
)

// testLogger logs memberlist to stderr when DYNAMO_TEST_LOG is set, and
// discards otherwise. (t.Log cannot be used: memberlist may log after a test
// ends, while it shuts down.)
func testLogger() *slog.Logger {
	if os.Getenv("DYNAMO_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// dataAddr is the Transport address a test node advertises; nothing dials it.
func dataAddr(id string, run int) string { return fmt.Sprintf("127.0.0.1:%d/%s", 9000+run, id) }

// config returns a local-profile config for node id on a free 127.0.0.1 port.
func config(id string, seeds ...string) gossip.Config {
	return gossip.Config{
		NodeID:   id,
		BindAddr: "127.0.0.1:0",
		DataAddr: dataAddr(id, 0),
		Seeds:    seeds,
		Profile:  gossip.ProfileLocal,
		Logger:   testLogger(),
	}
}

// start joins a node built from cfg and closes it when the test ends.
func start(t *testing.T, cfg gossip.Config) *gossip.Gossip {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	g, err := gossip.Join(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, g.Close()) })
	return g
}

// cluster starts n nodes, n1 to nN, all joining through n1, and waits until
// every node lists all of them, reachable.
func cluster(t *testing.T, n int) []*gossip.Gossip {
	t.Helper()
	nodes := []*gossip.Gossip{start(t, config("n1"))}
	for i := 2; i <= n; i++ {
		nodes = append(nodes, start(t, config(fmt.Sprintf("n%d", i), nodes[0].GossipAddr())))
	}
	want := make([]membership.Member, n)
	for i := range want {
		id := fmt.Sprintf("n%d", i+1)
		want[i] = membership.Member{ID: id, Addr: dataAddr(id, 0)}
	}
	eventually(t, func() bool {
		for _, g := range nodes {
			if !slices.Equal(g.Members(), want) {
				return false
			}
			for _, m := range want {
				if !g.Reachable(m.ID) {
					return false
				}
			}
		}
		return true
	}, "cluster of %d forms: %s", n, describe(nodes))
	return nodes
}

// eventually waits until cond holds, polling every tick, for waitFor at most.
func eventually(t *testing.T, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			require.FailNowf(t, "condition not met", msg, args...)
		}
		time.Sleep(tick)
	}
}

// describe is a lazy rendering of every node's view, for failure messages.
type describe []*gossip.Gossip

func (d describe) String() string {
	var b strings.Builder
	for _, g := range d {
		fmt.Fprintf(&b, "\n  %s sees", g.ID())
		for _, m := range g.Members() {
			fmt.Fprintf(&b, " %s(reachable=%v)", m.ID, g.Reachable(m.ID))
		}
	}
	return b.String()
}

// ids returns the IDs of a node's members.
func ids(g *gossip.Gossip) []string {
	var out []string
	for _, m := range g.Members() {
		out = append(out, m.ID)
	}
	return out
}

func TestGossip_Cluster_FormsFromOneSeed(t *testing.T) {
	cluster(t, 5)
}

func TestGossip_Leave_RemovesNodeEverywhere(t *testing.T) {
	nodes := cluster(t, 5)
	leaver, rest := nodes[2], slices.Delete(slices.Clone(nodes), 2, 3)

	require.NoError(t, leaver.Leave(5*time.Second))
	require.NotContains(t, ids(leaver), "n3", "the leaver drops itself at once")
	eventually(t, func() bool {
		for _, g := range rest {
			if slices.Contains(ids(g), "n3") || g.Reachable("n3") || len(g.Members()) != 4 {
				return false
			}
		}
		return true
	}, "n3 leaves everywhere: %s", describe(rest))
}

func TestGossip_Kill_StaysInRingUnreachable_ThenRestartRejoins(t *testing.T) {
	nodes := cluster(t, 5)
	victim, rest := nodes[3], slices.Delete(slices.Clone(nodes), 3, 4)
	seed := nodes[0].GossipAddr()

	require.NoError(t, victim.Close())
	eventually(t, func() bool {
		for _, g := range rest {
			if g.Reachable("n4") {
				return false
			}
		}
		return true
	}, "n4 unreachable everywhere: %s", describe(rest))
	for _, g := range rest {
		require.Contains(t, ids(g), "n4", "a failed node stays in the ring on %s", g.ID())
	}

	// A node that joins now learns of n4 from the others' ring records,
	// though memberlist never tells it about a dead node.
	late := start(t, config("n6", seed))
	rest = append(rest, late)
	eventually(t, func() bool { return slices.Contains(ids(late), "n4") && len(late.Members()) == 6 },
		"n6 learns the ring: %s", describe{late})
	require.False(t, late.Reachable("n4"))

	// The ring keeps n4 after memberlist forgets it (1 s in the local profile).
	require.Never(t, func() bool {
		for _, g := range rest {
			if !slices.Contains(ids(g), "n4") || g.Reachable("n4") {
				return true
			}
		}
		return false
	}, 2*time.Second, 50*time.Millisecond, "n4 stays a member, unreachable")

	// The process restarts with the same ID, on a new port and address.
	cfg := config("n4", seed)
	cfg.DataAddr = dataAddr("n4", 1)
	restarted := start(t, cfg)
	all := append(rest, restarted)
	eventually(t, func() bool {
		for _, g := range all {
			if !g.Reachable("n4") || !slices.Contains(g.Members(), membership.Member{ID: "n4", Addr: dataAddr("n4", 1)}) {
				return false
			}
		}
		return true
	}, "restarted n4 reachable everywhere: %s", describe(all))
}

func TestGossip_Remove_TakesDeadNodeOutEverywhere(t *testing.T) {
	nodes := cluster(t, 3)
	oldAddr := nodes[2].GossipAddr()
	require.NoError(t, nodes[2].Close())
	eventually(t, func() bool { return !nodes[0].Reachable("n3") && !nodes[1].Reachable("n3") },
		"n3 unreachable: %s", describe(nodes[:2]))

	require.NoError(t, nodes[0].Remove("n3"))
	require.NotContains(t, ids(nodes[0]), "n3")
	eventually(t, func() bool { return !slices.Contains(ids(nodes[1]), "n3") },
		"the removal spreads: %s", describe(nodes[:2]))

	require.ErrorIs(t, nodes[0].Remove("n3"), gossip.ErrUnknownMember)
	require.ErrorIs(t, nodes[0].Remove("nobody"), gossip.ErrUnknownMember)
	require.ErrorIs(t, nodes[0].Remove("n1"), gossip.ErrRemoveSelf)

	// A new run of n3, on the same gossip address, joins the ring again: its
	// larger incarnation beats the tombstone, and memberlist takes it back
	// once it refutes its old death.
	cfg := config("n3", nodes[0].GossipAddr())
	cfg.BindAddr = oldAddr
	again := start(t, cfg)
	all := []*gossip.Gossip{nodes[0], nodes[1], again}
	eventually(t, func() bool {
		for _, g := range all {
			if !slices.Contains(ids(g), "n3") || !g.Reachable("n3") {
				return false
			}
		}
		return true
	}, "n3 rejoins: %s", describe(all))
}

func TestGossip_Subscribe_FiresOnJoin(t *testing.T) {
	n1 := start(t, config("n1"))
	changes, cancel := n1.Subscribe()

	start(t, config("n2", n1.GossipAddr()))
	select {
	case <-changes:
	case <-time.After(waitFor):
		require.FailNow(t, "no notification for n2's join")
	}
	eventually(t, func() bool { return slices.Contains(ids(n1), "n2") && n1.Reachable("n2") }, "n1 sees n2")

	cancel()
	cancel() // idempotent
	pending(changes)
	start(t, config("n3", n1.GossipAddr()))
	eventually(t, func() bool { return n1.Reachable("n3") }, "n1 sees n3")
	require.False(t, pending(changes), "no notification after cancel")
}

func TestGossip_SecretKeyAndTransportOverride(t *testing.T) {
	key := []byte("0123456789abcdef")
	tr, err := gossip.NewNetTransport("127.0.0.1:0", nil)
	require.NoError(t, err)
	cfg := config("n1")
	cfg.BindAddr = "" // the transport decides
	cfg.Transport = tr
	cfg.SecretKey = key
	n1 := start(t, cfg)
	require.Equal(t, fmt.Sprintf("127.0.0.1:%d", tr.GetAutoBindPort()), n1.GossipAddr())

	cfg = config("n2", n1.GossipAddr())
	cfg.SecretKey = key
	n2 := start(t, cfg)
	eventually(t, func() bool { return n1.Reachable("n2") && n2.Reachable("n1") }, "encrypted pair forms")

	cfg = config("intruder", n1.GossipAddr())
	cfg.SecretKey = []byte("fedcba9876543210")
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	_, err = gossip.Join(ctx, cfg)
	require.ErrorIs(t, err, gossip.ErrJoin)
	require.NotContains(t, ids(n1), "intruder")
}

func TestGossip_CloseAndLeave_Idempotent(t *testing.T) {
	g, err := gossip.New(config("solo"))
	require.NoError(t, err)
	require.Equal(t, []membership.Member{{ID: "solo", Addr: dataAddr("solo", 0)}}, g.Members())
	require.True(t, g.Reachable("solo"))

	start := time.Now()
	require.NoError(t, g.Leave(5*time.Second), "leaving a cluster of one")
	require.Less(t, time.Since(start), time.Second, "nobody to wait for")
	require.Empty(t, g.Members())
	require.NoError(t, g.Leave(time.Second))
	require.NoError(t, g.Close())

	_, err = g.Join(t.Context(), "127.0.0.1:1")
	require.ErrorIs(t, err, gossip.ErrClosed)

	h, err := gossip.New(config("other"))
	require.NoError(t, err)
	require.NoError(t, h.Close())
	require.NoError(t, h.Close())
	require.NoError(t, h.Leave(time.Second))
	require.ErrorIs(t, h.Remove("x"), gossip.ErrClosed)
}

func TestGossip_Join_CancelledContext(t *testing.T) {
	g := start(t, config("n1"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := g.Join(ctx, "127.0.0.1:1")
	require.ErrorIs(t, err, context.Canceled)
}

func TestConfig_Validate(t *testing.T) {
	good := config("n1")
	require.NoError(t, good.Validate())

	tests := map[string]struct {
		edit func(*gossip.Config)
		want []string
	}{
		"metadata too large": {
			func(c *gossip.Config) {
				c.NodeID = strings.Repeat("x", 300)
				c.DataAddr = strings.Repeat("y", 300)
			},
			[]string{"MetaMaxSize (512)", "NodeID (300 bytes)", "DataAddr (300 bytes)"},
		},
		"every problem at once": {
			func(c *gossip.Config) {
				c.NodeID, c.DataAddr, c.BindAddr = "", "", "localhost:7946"
				c.SecretKey, c.Profile, c.Seeds = []byte("short"), "fast", []string{"nohost"}
			},
			[]string{"NodeID is empty", "DataAddr is empty", `BindAddr ("localhost:7946") must have an IP address`,
				"SecretKey is 5 bytes", `Profile ("fast")`, `Seeds[0] ("nohost")`},
		},
		"JoinRetry without the reconnect loop": {
			func(c *gossip.Config) { c.JoinRetry, c.ReconnectInterval = true, -time.Second },
			[]string{"JoinRetry needs the reconnect loop", "ReconnectInterval (-1s)"},
		},
		"zone too long": {
			func(c *gossip.Config) { c.Zone = strings.Repeat("z", membership.MaxZoneLen+1) },
			[]string{fmt.Sprintf("Zone is %d bytes, the limit is %d", membership.MaxZoneLen+1, membership.MaxZoneLen)},
		},
		"metadata with a zone too large": {
			func(c *gossip.Config) {
				c.NodeID = strings.Repeat("x", 200)
				c.DataAddr = strings.Repeat("y", 250)
				c.Zone = strings.Repeat("z", membership.MaxZoneLen)
			},
			[]string{"MetaMaxSize (512)", "Zone (64 bytes)"},
		},
		"bad port": {
			func(c *gossip.Config) { c.BindAddr = "127.0.0.1:70000" },
			[]string{`BindAddr ("127.0.0.1:70000") has a bad port`},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			err := cfg.Validate()
			require.ErrorIs(t, err, gossip.ErrInvalidConfig)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
			_, err = gossip.New(cfg)
			require.ErrorIs(t, err, gossip.ErrInvalidConfig, "New validates")
		})
	}
}

// pending reports whether a notification is waiting on ch, and takes it.
func pending(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
