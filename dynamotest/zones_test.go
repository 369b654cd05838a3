// zones_test.go: the simulation with zones (issue 19): a whole zone down while clients write loses nothing acknowledged, writes keep succeeding at W=2, and handoff and anti-entropy bring the zone back.
package dynamotest_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/dynamotest"
)

// zoneSeeds is how many seeds each zone outage variant runs.
func zoneSeeds() int64 {
	if testing.Short() {
		return 2
	}
	return 4
}

// TestSim_ZoneOutage takes one of three zones (two nodes each) down for the
// middle third of the workload. Every key has a replica in each zone, so
// every add during the outage is acknowledged at W=2, with a sloppy quorum
// and with strict quorums (PrimariesOnly) alike; none is lost; and after the
// zone returns, on its own disks or on empty ones, hinted handoff and
// anti-entropy make every replica identical again (Converged).
func TestSim_ZoneOutage(t *testing.T) {
	variants := map[string]func(*dynamotest.SimConfig){
		"crash":                     func(*dynamotest.SimConfig) {},
		"crash, strict quorums":     func(c *dynamotest.SimConfig) { c.PrimariesOnly = true },
		"lose disks":                func(c *dynamotest.SimConfig) { c.ZoneOutage = dynamotest.ZoneOutageLoseDisks },
		"lose disks, strict quorum": func(c *dynamotest.SimConfig) { c.ZoneOutage, c.PrimariesOnly = dynamotest.ZoneOutageLoseDisks, true },
	}
	for name, mut := range variants {
		t.Run(name, func(t *testing.T) {
			adds, acked := 0, 0
			for seed := int64(1); seed <= zoneSeeds(); seed++ {
				t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
					cfg := config(t, seed)
					cfg.Faults = false
					cfg.Nodes, cfg.Zones, cfg.ZoneOutage = 6, 3, dynamotest.ZoneOutageCrash
					mut(&cfg)
					rep := dynamotest.RunT(t, cfg)
					t.Logf("%s zone=%s zone_down_adds=%d zone_down_acked=%d zone_hints=%d", rep, rep.DownZone, rep.ZoneDownAdds, rep.ZoneDownAcked, rep.ZoneHints)
					requireKept(t, rep, fmt.Sprintf("replay: go test ./dynamotest -run 'TestSim_ZoneOutage/%s/seed=%d$' -v -simlog", name, seed))
					require.NotEmpty(t, rep.DownZone)
					require.Positive(t, rep.ZoneDownAdds, "clients wrote during the outage")
					require.Equal(t, rep.ZoneDownAdds, rep.ZoneDownAcked, "every add during the outage was acknowledged")
					if cfg.PrimariesOnly {
						require.Zero(t, rep.ZoneHints, "strict quorums leave no hints: anti-entropy alone brings the zone back")
					} else {
						require.Positive(t, rep.ZoneHints, "the sloppy quorum left hints for the zone")
					}
					adds += rep.ZoneDownAdds
					acked += rep.ZoneDownAcked
				})
			}
			t.Logf("%s: %d of %d adds acknowledged while a zone was down", name, acked, adds)
		})
	}
}

// TestSim_ZonesUnderFaults runs the nemesis over a cluster in zones: the
// checker's promises hold, and every key's replicas span min(N, Zones)
// zones (a "zones" violation otherwise).
func TestSim_ZonesUnderFaults(t *testing.T) {
	for seed := int64(1); seed <= zoneSeeds(); seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			cfg := config(t, seed)
			cfg.Nodes, cfg.Zones = 6, 3
			rep := dynamotest.RunT(t, cfg)
			t.Log(rep)
			requireKept(t, rep, fmt.Sprintf("replay: go test ./dynamotest -run 'TestSim_ZonesUnderFaults/seed=%d$' -v -simlog", seed))
		})
	}
}

// TestSim_ZoneOutage_Replays runs one zone outage seed twice: the reports,
// fingerprints included, are identical.
func TestSim_ZoneOutage_Replays(t *testing.T) {
	cfg := config(t, 5)
	cfg.Faults = false
	cfg.Nodes, cfg.Zones, cfg.ZoneOutage = 6, 3, dynamotest.ZoneOutageLoseDisks
	a := dynamotest.RunT(t, cfg)
	b := dynamotest.RunT(t, cfg)
	require.Equal(t, a, b, "seed %d did not replay", cfg.Seed)
}
