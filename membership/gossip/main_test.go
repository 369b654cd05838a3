// Test entry point for the gossip package (§4.8): no goroutine may outlive the tests.

package gossip_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine, ours or memberlist's, is still
// running after the last test. Nothing is ignored: Close and Leave shut
// memberlist down and wait for every join they started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
