// loss_test.go: the simulation with data loss (issue 20, issue 12): disks
// rolled back, records dropped or damaged with the node's identity kept,
// disks replaced again and again on one key's replicas, and contexts edited
// in clients' hands.
package dynamotest_test

import (
	"testing"

	"github.com/dynamo-kv/dynamo/dynamotest"
)

// TestSim_PartialLoss: nodes come back with their identity but with a disk
// rolled back to an earlier snapshot, without a key's record, or with a
// damaged record. No acknowledged write is lost (no dot is issued twice),
// nothing resurrects, and replicas converge.
func TestSim_PartialLoss(t *testing.T) {
	runSeeds(t, "TestSim_PartialLoss", func(cfg *dynamotest.SimConfig) { cfg.PartialLoss = true })
}

// TestSim_AmnesiaHeavy: the first key's replicas lose their disks again and
// again, so its vector keeps gaining incarnations: dead ones fold away
// without losing a write, and the key keeps taking context writes.
func TestSim_AmnesiaHeavy(t *testing.T) {
	runSeeds(t, "TestSim_AmnesiaHeavy", func(cfg *dynamotest.SimConfig) { cfg.AmnesiaHeavy = true })
}

// TestSim_TamperContexts: clients pass contexts through their text form and
// edit one in three: every edited context is refused (a "forged-context"
// violation otherwise), and no write is lost or resurrected.
func TestSim_TamperContexts(t *testing.T) {
	runSeeds(t, "TestSim_TamperContexts", func(cfg *dynamotest.SimConfig) { cfg.TamperContexts = true })
}
