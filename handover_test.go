// handover_test.go: §4.9 a leaving node's partitions move once: the new
// owners keep what it pushed until it is gone.
package dynamo

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// sumTransferKeys sums the keys transfers moved on the first n nodes.
func sumTransferKeys(c *testCluster, n int) int {
	k := 0
	for _, s := range c.stores[:n] {
		w := s.Stats().Transfer
		k += w.KeysReceived + w.KeysSent
	}
	return k
}

// A node's partitions move once when it leaves: the nodes it pushed them to
// in Decommission keep them through their own transfer rounds before the
// leave reaches them (they are not primaries yet, and used to push the data
// back and drop it), so after the leave nothing is pulled again.
func TestTransfer_LeaveMovesPartitionsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 5, func(cfg *Config) { cfg.AntiEntropy.Interval = -1 })
		keys := loadKeys(t, c, -1)
		leaver := 4
		before := sumTransferKeys(c, 5)
		require.NoError(t, c.stores[leaver].Decommission(context.Background()))
		require.Positive(t, sumTransferKeys(c, 5)-before, "the leaver pushed its partitions")
		stayers := sumTransferKeys(c, leaver)

		// The leave takes a while to reach the others, who meanwhile run
		// their transfer rounds.
		time.Sleep(10 * time.Second)
		for _, s := range c.stores[:leaver] {
			require.NoError(t, s.TransferRound(context.Background()))
		}
		c.members.Remove(nodeID(leaver))
		c.stop(leaver)
		c.stores = c.stores[:leaver]
		untilFake(t, time.Minute, c.settledTransfers, "transfer did not finish")
		require.Equal(t, stayers, sumTransferKeys(c, leaver), "keys moved again after the leave")
		for _, k := range keys {
			require.Equal(t, ids(c.stores[0].PreferenceList([]byte(k), 3)), c.holders(k), "key %s is on its new owners", k)
		}
	})
}

// A node that was decommissioned but never left keeps its partitions, and
// the nodes it pushed them to hand them back and drop them once the hold
// runs out.
func TestTransfer_DecommissionWithoutLeaveIsUndoneAfterTheHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, 5, func(cfg *Config) { cfg.AntiEntropy.Interval = -1 })
		keys := loadKeys(t, c, -1)
		require.NoError(t, c.stores[4].Decommission(context.Background()))
		extra := func() int {
			n := 0
			for _, k := range keys {
				n += len(c.holders(k)) - 3
			}
			return n
		}
		require.Positive(t, extra(), "the next owners hold the leaver's partitions")
		time.Sleep(handoverHold / 2)
		for _, s := range c.stores {
			require.NoError(t, s.TransferRound(context.Background()))
		}
		require.Positive(t, extra(), "held while the leave may still come")
		time.Sleep(handoverHold)
		for _, s := range c.stores {
			require.NoError(t, s.TransferRound(context.Background()))
		}
		require.Zero(t, extra(), "dropped once the hold ran out")
		for _, k := range keys {
			require.Equal(t, ids(c.stores[0].PreferenceList([]byte(k), 3)), c.holders(k))
		}
	})
}
