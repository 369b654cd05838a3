package membership_test

import (
	"slices"
	"testing"
	"time"
)

func TestDebugLeaveTime(t *testing.T) {
	nodes := cluster(t, 5)
	s := time.Now()
	err := nodes[2].Leave(5 * time.Second)
	t.Logf("leave took %v err=%v", time.Since(s), err)
	rest := slices.Delete(slices.Clone(nodes), 2, 3)
	eventually(t, func() bool {
		for _, g := range rest {
			if slices.Contains(ids(g), "n3") {
				return false
			}
		}
		return true
	}, "x")
	t.Logf("gone from members after %v", time.Since(s))
}
