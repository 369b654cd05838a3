// orset_config_test.go: SimConfig refuses combinations the OR-set workload does not run.
package dynamotest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSimConfig_ORSet_Validate(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg  SimConfig
		want string
	}{
		"lww":          {SimConfig{ORSet: true, Mode: ModeLWW}, "takes no Mode"},
		"stale-delete": {SimConfig{ORSet: true, Broken: BrokenStaleDelete}, "runs no deletes"},
		"union-remove": {SimConfig{Broken: BrokenUnionRemove}, "needs ORSet"},
		"large-values": {SimConfig{ORSet: true, LargeValues: true}, "not padded"},
	} {
		t.Run(name, func(t *testing.T) {
			require.ErrorContains(t, tc.cfg.withDefaults().validate(), tc.want)
		})
	}
	require.NoError(t, SimConfig{ORSet: true, Broken: BrokenUnionRemove}.withDefaults().validate())
	require.NoError(t, SimConfig{ORSet: true, Broken: BrokenAckBeforeCommit}.withDefaults().validate())
}
