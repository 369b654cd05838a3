// Package transporttest is the conformance suite every transport.Transport must pass (DESIGN §8, test layer 3).
//
// # Basics
//
// An implementation's test hands Run a function that makes a fresh Factory for
// each subtest:
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, func(t *testing.T) transporttest.Factory {
//			return &myFactory{}
//		})
//	}
//
// The suite serves, calls and closes the transports the Factory returns; it
// also registers a Close for each with t.Cleanup. Subtests run in parallel.
//
// # What it checks
//
// Round trips, 64 concurrent calls, buffer ownership, remote errors, the frame
// size limit on requests and replies, a peer restarting on the same address,
// ctx deadlines and cancellation, Close unblocking calls and cancelling
// handlers, unreachable addresses, and calls and Serve after Close.
//
// # Caveats
//
// Handlers in the suite return once their ctx ends, so an implementation's
// Close may wait for them. No assertion is tight on time: a deadline of
// 100ms must produce context.DeadlineExceeded, but the suite only bounds
// how long anything takes by a generous WaitTimeout.
package transporttest

import (
	"time"

	"testing"

	"github.com/dynamo-kv/dynamo/transport"
)

// Factory creates the transports one subtest uses.
// Its methods are called from the subtest's goroutine only.
type Factory interface {
	// New returns a transport listening on a fresh address, not yet serving.
	New(t *testing.T) transport.Transport
	// Reopen returns a new transport listening on addr, the address of a
	// transport the suite has closed: this is how a node restarts.
	Reopen(t *testing.T, addr string) transport.Transport
	// MaxFrameSize is the largest payload the transports accept. Keep it
	// small (64 KiB, say) so the suite stays quick.
	MaxFrameSize() int
}

// Run runs the suite. newFactory is called once per subtest.
func Run(t *testing.T, newFactory func(t *testing.T) Factory) {
	tests := []struct {
		name string
		test func(t *testing.T, f Factory)
	}{
		{"RoundTrip", testRoundTrip},
		{"EmptyPayloads", testEmptyPayloads},
		{"CallSelf", testCallSelf},
		{"BuffersNotShared", testBuffersNotShared},
		{"ConcurrentCalls", testConcurrentCalls},
		{"RemoteError", testRemoteError},
		{"FrameLimit_Request", testFrameLimitRequest},
		{"FrameLimit_Reply", testFrameLimitReply},
		{"PeerRestart", testPeerRestart},
		{"PeerClose_FailsCallsInFlight", testPeerCloseFailsCallsInFlight},
		{"Deadline_Honoured", testDeadlineHonoured},
		{"Cancel_Honoured", testCancelHonoured},
		{"Close_UnblocksCalls", testCloseUnblocksCalls},
		{"Unreachable", testUnreachable},
		{"NotServing", testNotServing},
		{"AfterClose", testAfterClose},
		{"Close_Idempotent", testCloseIdempotent},
		{"Serve_Twice", testServeTwice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.test(t, newFactory(t))
		})
	}
}

// WaitTimeout bounds every wait in the suite, so a broken transport fails a
// subtest instead of hanging it.
const WaitTimeout = 10 * time.Second
