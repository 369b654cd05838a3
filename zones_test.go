// zones_test.go: layer-2 tests of zones on the in-memory network in fake time
// (§4.6 across data centers): the sloppy quorum's stand-in comes from the lost
// replica's zone, and a whole zone down leaves every key writable and
// readable, even by strict quorums, until handoff brings the zone back.
package dynamo

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
)

// newZonedCluster starts len(zones) nodes, node i in zones[i], and waits
// until every node's ring has the zones.
func newZonedCluster(t *testing.T, zones []string, mut func(*Config)) *testCluster {
	t.Helper()
	c := newTestCluster(t, len(zones), mut)
	for i, z := range zones {
		c.members.Add(Member{ID: nodeID(i), Addr: nodeID(i), Zone: z})
	}
	synctest.Wait()
	for _, s := range c.stores {
		require.Equal(t, c.members.Members(), s.Members(), "%s's ring has the zones", s.cfg.NodeID)
	}
	c.settle()
	return c
}

// zoneOf returns node id's zone in c.
func (c *testCluster) zoneOf(id string) string {
	for _, m := range c.members.Members() {
		if m.ID == id {
			return m.Zone
		}
	}
	return ""
}

// Issue 19, sloppy quorum: with a primary down, the write's stand-in is the
// other node of that primary's zone, so the key keeps a replica in each
// zone; without the zone preference it would be whichever fallback ranks
// first, in another zone two times in three.
func TestZones_Fallback_FromTheLostReplicasZone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		zones := []string{"A", "A", "B", "B", "C", "C"}
		c := newZonedCluster(t, zones, nil)
		for k := range 12 {
			key := fmt.Sprintf("key-%d", k)
			pref := c.stores[0].PreferenceList([]byte(key), 6)
			lost := pref[1+k%2] // the second or third primary
			var twin string
			for i, z := range zones {
				if z == lost.Zone && nodeID(i) != lost.ID {
					twin = nodeID(i)
				}
			}
			c.down(lost.ID)
			put(t, c.stores[indexOf(pref[0].ID)], key, "v", Context{})
			synctest.Wait()
			require.Equal(t, 1, pendingFor(c.stores[indexOf(twin)], lost.ID),
				"key %s: %s (zone %s) holds the hint for %s; list %v", key, twin, lost.Zone, lost.ID, pref)
			require.Equal(t, []string{"v"}, c.local(indexOf(twin), key))

			c.upAll()
			untilFake(t, 2*c.stores[0].cfg.Handoff.Interval, func() bool { return c.totalPending() == 0 }, "the hint is delivered")
			require.Equal(t, []string{"v"}, c.local(indexOf(lost.ID), key), "key %s: the owner got it home", key)
		}
	})
}

// Issue 19, zone outage: with every key's three replicas in three zones, a
// whole zone down leaves each key two reachable primaries, so writes and
// reads at W=2 and R=2 succeed even with PrimariesOnly (a strict quorum). The
// sloppy-quorum writes leave hints that come home; the keys written only
// strictly left none, and anti-entropy brings them to the returning zone. In the same
// cluster without zones, some key has two primaries in the lost "zone", and
// its strict write fails: that is the comparison.
func TestZones_WholeZoneDown_StrictQuorumsHold(t *testing.T) {
	zones := []string{"A", "A", "B", "B", "C", "C"}
	const keys = 24
	run := func(t *testing.T, zoned bool) (strictFailures int) {
		synctest.Test(t, func(t *testing.T) {
			var c *testCluster
			if zoned {
				c = newZonedCluster(t, zones, nil)
			} else {
				c = newTestCluster(t, len(zones), nil)
			}
			ctx := context.Background()
			c.down(nodeID(4)) // zone C
			c.down(nodeID(5))
			for k := range keys {
				key := fmt.Sprintf("key-%d", k)
				via := c.stores[k%4] // a node of zone A or B
				if err := via.Put(ctx, []byte(key), []byte("strict"), Context{}, WithPrimariesOnly()); err != nil {
					require.ErrorIs(t, err, ErrWriteQuorum)
					strictFailures++
					continue
				}
				sibs, cx, err := via.Get(ctx, []byte(key), WithPrimariesOnly())
				require.NoError(t, err, "key %s: strict read at R=2", key)
				require.Equal(t, []string{"strict"}, values(sibs))
				if k%2 == 1 {
					require.NoError(t, via.Put(ctx, []byte(key), []byte("sloppy"), cx), "key %s: sloppy write", key)
				}
			}
			if !zoned {
				return
			}
			require.Positive(t, c.totalPending(), "the sloppy writes left hints for zone C")
			c.upAll()
			untilFake(t, 2*c.stores[0].cfg.Handoff.Interval, func() bool { return c.totalPending() == 0 }, "every hint delivered")
			for _, s := range c.stores {
				_, err := s.AntiEntropy(ctx)
				require.NoError(t, err)
			}
			for k := range keys {
				key := fmt.Sprintf("key-%d", k)
				pref := c.stores[0].PreferenceList([]byte(key), DefaultN)
				var inZones []string
				want := []string{"strict"} // brought to zone C by anti-entropy
				if k%2 == 1 {
					want = []string{"sloppy"} // by hinted handoff
				}
				for _, m := range pref {
					inZones = append(inZones, m.Zone)
					require.Equal(t, want, c.local(indexOf(m.ID), key), "key %s on %s (zone %s)", key, m.ID, m.Zone)
				}
				slices.Sort(inZones)
				require.Equal(t, []string{"A", "B", "C"}, inZones, "key %s", key)
			}
		})
		return strictFailures
	}
	t.Run("zones", func(t *testing.T) {
		require.Zero(t, run(t, true), "no strict write fails with one replica per zone")
	})
	t.Run("no zones", func(t *testing.T) {
		failed := run(t, false)
		t.Logf("without zones, %d of %d strict writes failed with n4 and n5 down", failed, keys)
		require.Positive(t, failed, "without zones some key keeps two replicas on n4 and n5")
	})
}
