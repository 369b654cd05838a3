// orset_sim_test.go: the OR-set workload under the nemesis over many seeds, and the broken modes its checker must catch.
package dynamotest_test

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/dynamotest"
)

// orsetSeeds is how many seeds the OR-set tests run: 20, or -seeds when
// given (on the command line or in DYNAMOTEST_SEEDS).
func orsetSeeds() int {
	seeds := 20
	flagSet := false
	flag.Visit(func(f *flag.Flag) { flagSet = flagSet || f.Name == "seeds" })
	if flagSet || os.Getenv("DYNAMOTEST_SEEDS") != "" {
		seeds = *seedsFlag
	}
	return seeds
}

// TestSim_ORSet runs the OR-set workload with faults and a sloppy quorum:
// no acknowledged add goes missing unless a remove observed it, no
// acknowledged remove is undone unless the element was added again
// unobserved, and replicas converge within maxConvergeMS.
func TestSim_ORSet(t *testing.T) {
	runSeedsN(t, "TestSim_ORSet", orsetSeeds(), func(cfg *dynamotest.SimConfig) { cfg.ORSet = true })
}

// TestSim_ORSetStrict is TestSim_ORSet with strict quorums, where every read
// overlaps every write acknowledged before it, so more adds and removes are
// surely seen and held to the rules.
func TestSim_ORSetStrict(t *testing.T) {
	runSeedsN(t, "TestSim_ORSetStrict", orsetSeeds(), func(cfg *dynamotest.SimConfig) { cfg.ORSet = true; cfg.PrimariesOnly = true })
}

// TestSim_ORSet_Broken checks the checker: the same workload on sets merged
// by union brings removed elements back, and storage that acknowledges
// updates it never applies loses adds or undoes removes.
func TestSim_ORSet_Broken(t *testing.T) {
	t.Run("union-remove", func(t *testing.T) {
		resurrected := 0
		for seed := int64(1); seed <= 3; seed++ {
			cfg := config(t, seed)
			cfg.ORSet, cfg.Broken, cfg.Faults = true, dynamotest.BrokenUnionRemove, false
			rep := dynamotest.RunT(t, cfg)
			t.Log(rep)
			require.Zero(t, rep.Lost, "union loses no add")
			resurrected += rep.Resurrected
		}
		require.Positive(t, resurrected, "the checker missed removes that a union merge undid")
	})
	t.Run("ack-before-commit", func(t *testing.T) {
		cfg := config(t, 1)
		cfg.ORSet, cfg.Broken = true, dynamotest.BrokenAckBeforeCommit
		rep := dynamotest.RunT(t, cfg)
		t.Log(rep)
		require.Positive(t, rep.Lost+rep.Resurrected, "the checker missed updates the storage dropped")
		require.Error(t, rep.Err())
	})
}

// TestSim_ORSet_ZoneOutage runs the OR-set workload while one of three
// zones is down: its updates are acknowledged, and no add or remove is lost.
func TestSim_ORSet_ZoneOutage(t *testing.T) {
	for seed := int64(1); seed <= 3; seed++ {
		cfg := config(t, seed)
		cfg.ORSet, cfg.Faults = true, false
		cfg.Nodes, cfg.Zones, cfg.ZoneOutage = 6, 3, dynamotest.ZoneOutageLoseDisks
		rep := dynamotest.RunT(t, cfg)
		t.Logf("%s zone=%s zone_down_adds=%d zone_down_acked=%d", rep, rep.DownZone, rep.ZoneDownAdds, rep.ZoneDownAcked)
		requireKept(t, rep, fmt.Sprintf("seed %d", seed))
		require.Positive(t, rep.ZoneDownAdds, "clients added during the outage")
		require.Equal(t, rep.ZoneDownAdds, rep.ZoneDownAcked, "every add during the outage was acknowledged")
	}
}
