// loss_test.go: the simulation with data loss (issue 20, issue 12): disks
// rolled back, records dropped or damaged with the node's identity kept,
// disks replaced again and again on one key's replicas, and contexts edited
// in clients' hands.
package dynamotest_test

import (
	"flag"
	"os"
	"testing"

	"github.com/dynamo-kv/dynamo/dynamotest"
)

// lossSeeds is how many seeds the data-loss simulations run: -seeds (or
// DYNAMOTEST_SEEDS) when given, else 15, to keep every go test short (run
// 1,000 by hand; see the README).
func lossSeeds() int {
	set := os.Getenv("DYNAMOTEST_SEEDS") != ""
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "seeds" })
	if set {
		return *seedsFlag
	}
	return 15
}

// TestSim_PartialLoss: nodes come back with their identity but with a disk
// rolled back to an earlier snapshot, without a key's record, or with a
// damaged record. No acknowledged write is lost (no dot is issued twice),
// nothing resurrects, and replicas converge.
func TestSim_PartialLoss(t *testing.T) {
	runSeedsN(t, "TestSim_PartialLoss", lossSeeds(), func(cfg *dynamotest.SimConfig) { cfg.PartialLoss = true })
}

// TestSim_AmnesiaHeavy: the first key's replicas lose their disks again and
// again, so its vector keeps gaining incarnations: dead ones fold away
// without losing a write, and the key keeps taking context writes.
func TestSim_AmnesiaHeavy(t *testing.T) {
	runSeedsN(t, "TestSim_AmnesiaHeavy", lossSeeds(), func(cfg *dynamotest.SimConfig) { cfg.AmnesiaHeavy = true })
}

// TestSim_TamperContexts: clients pass contexts through their text form and
// edit one in three: every edited context is refused (a "forged-context"
// violation otherwise), and no write is lost or resurrected.
func TestSim_TamperContexts(t *testing.T) {
	runSeedsN(t, "TestSim_TamperContexts", lossSeeds(), func(cfg *dynamotest.SimConfig) { cfg.TamperContexts = true })
}

// TestSim_ChainedWrites: every add is written twice, the second time with
// the context PutReturning returned and no read: no acknowledged add is
// lost, so the returned contexts never covered a concurrent add.
func TestSim_ChainedWrites(t *testing.T) {
	runSeedsN(t, "TestSim_ChainedWrites", lossSeeds(), func(cfg *dynamotest.SimConfig) { cfg.ChainedWrites = true })
}
