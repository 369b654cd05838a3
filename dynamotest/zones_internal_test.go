// zones_internal_test.go: validation of the simulation's zone settings.
package dynamotest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSimConfig_ValidateZones(t *testing.T) {
	tests := map[string]struct {
		cfg  SimConfig
		want string // "" valid
	}{
		"no zones":                 {cfg: SimConfig{}},
		"zones, no outage":         {cfg: SimConfig{Nodes: 6, Zones: 3}},
		"outage":                   {cfg: SimConfig{Nodes: 6, Zones: 3, ZoneOutage: ZoneOutageLoseDisks}},
		"more zones than nodes":    {cfg: SimConfig{Nodes: 3, Zones: 4}, want: "Zones (4) must be between 0 and Nodes (3)"},
		"negative zones":           {cfg: SimConfig{Nodes: 3, Zones: -1}, want: "Zones (-1) must be between 0 and Nodes (3)"},
		"outage without two zones": {cfg: SimConfig{Nodes: 3, Zones: 1, ZoneOutage: ZoneOutageCrash}, want: "ZoneOutage crash needs at least 2 Zones, not 1"},
		"outage beside faults":     {cfg: SimConfig{Nodes: 6, Zones: 2, ZoneOutage: ZoneOutageCrash, Faults: true}, want: "ZoneOutage runs without Faults"},
		"unknown outage":           {cfg: SimConfig{Nodes: 6, Zones: 2, ZoneOutage: 9}, want: "ZoneOutage (9) is unknown"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.cfg.withDefaults().validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}
