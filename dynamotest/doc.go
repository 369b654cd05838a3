// Package dynamotest is a deterministic simulation of a dynamo cluster under faults (TESTING §3, §4.4-§4.7).
//
// # Basics
//
// RunT starts SimConfig.Nodes dynamo Stores on one in-memory network inside a
// testing/synctest bubble, so every timeout, delay, handoff and anti-entropy
// round runs on fake time. Clients add unique integers to set-valued keys with
// dynamo.Modify and dynamo.Union, read them, and now and then delete a whole
// key, while a nemesis partitions, isolates and bridges the network, blocks one
// direction of a link, drops requests and replies, delays and duplicates
// messages, crashes nodes (keeping or losing their storage), restarts them,
// skews their clocks and pauses. Afterwards the simulation heals everything,
// lets hinted handoff, read repair and anti-entropy bring the replicas
// together, and checks the promises of TESTING §1:
//
//	func TestMyCluster(t *testing.T) {
//		rep := dynamotest.RunT(t, dynamotest.SimConfig{Seed: 7, Faults: true})
//		t.Log(rep) // acked=... lost=0 unacked_present=... converge_ms=... max_siblings=... resurrected=0 seed=7
//		if err := rep.Err(); err != nil {
//			t.Fatal(err)
//		}
//	}
//
// SimConfig.Resolver and SimConfig.Merge plug in a resolver of your own, so the
// same workload and checker test it: a resolver that drops set elements shows
// up as lost > 0. A run of 300 operations takes about 50ms (250ms with -race).
//
// # Workload and faults
//
// Each step is either a client step, in which 1 to Clients distinct clients
// run one operation each, concurrently, at distinct fake-time offsets, or a
// nemesis action. Operations are 75% adds (Modify), 13% reads (Get without a
// resolver, to see siblings) and 12% deletes (Get, then Delete with its
// Context). Only the first half of the keys take deletes; the rest only grow.
// The first key rests after an acknowledged Delete (no adds for longer than
// the tombstone grace), so that its tombstone is purged under faults.
//
// Network faults, chaos and crashes expire at the first step 2s of fake time
// after they began, and a step lasts at most 3s, so a hint is delivered within
// about 6s; the stores' tombstone grace of 12s exceeds that plus twice the
// largest clock skew (2s), as Config.TombstoneGrace requires. At most two
// nodes are down at once. At most
// one crash per run loses its storage (amnesia), and none when W = 1: two disk
// losses can destroy a write acknowledged by W = 2 replicas, which no protocol
// prevents; one cannot.
//
// Three settings add faults of data and of clients. SimConfig.PartialLoss
// brings nodes back with their identity but with less data: a disk rolled
// back to a snapshot at most 6s old, the record of one key dropped, or one
// byte of a record damaged; and one add in four is then a blind write (the
// zero Context), the write that a reissued dot loses outright (Riak's
// kv679). SimConfig.AmnesiaHeavy replaces the disks of the first key's
// replicas again and again. In both, losses come one at a time: the next
// only once a client step found every primary of every key in sync.
// SimConfig.TamperContexts passes every context of an add through its text
// form and edits one in three: Put must refuse it with
// dynamo.ErrBadContext. The stores always run with a cluster secret, so
// contexts carry real MACs.
//
// # What is checked
//
//   - lost (promise 2): every add whose Modify returned nil is in the final
//     read, unless some Delete's read saw it (that Delete may have been
//     applied, acknowledged or not). Report.CheckedAcked counts the adds held
//     to this.
//   - resurrected (promise 4): an element an acknowledged Delete's read saw
//     must not be in the final state, nor be read later by a read that surely
//     saw the tombstone, unless some write carrying it may have escaped the
//     Delete: a write the Delete's read did not surely see. A read surely saw a
//     write when the replicas were found in sync between the two, or when the
//     write was acknowledged before the read and R+W > N held between them
//     (always with SimConfig.PrimariesOnly; with the default sloppy quorum only
//     while every node was up and no hint pending).
//   - duplicate-siblings and siblings (promise 4): every sibling a Get returns
//     is a set some write attempt wrote, and one attempt never shows up as two
//     siblings. More siblings than clients is a violation when R+W > N and all
//     of them are acknowledged writes; otherwise (failed attempts, R+W <= N) it
//     can be legitimate and is a note.
//   - forged-context: an edited context that Put did not refuse with
//     dynamo.ErrBadContext (SimConfig.TamperContexts).
//   - convergence (promise 3): within a bounded number of rounds after healing,
//     no node holds a hint, every primary of every key holds byte-identical
//     state, and every node reads every key (R=N) the same.
//
// In ModeLWW, lost and resurrected elements are expected: they are notes, never
// violations.
//
// # The OR-set workload
//
// With SimConfig.ORSet the keys hold dynamo.ORSet[int64] values instead:
// operations are 50% adds of new elements, 10% re-adds of an element added to
// the key before, 25% removes of one element the update's read observed
// (dynamo.UpdateSet) and 15% reads (dynamo.GetSet), with no deletes, under the
// same nemesis. The checker (orset_check.go) holds every acknowledged add to
// "present in the final state and in every read that surely saw it, unless a
// remove that may have observed it took it out", and every acknowledged remove
// to "absent from the final state and from every read that surely saw the
// remove, unless an add of the element escaped the remove's read" (seenBy, as
// above). Report.Deletes and CheckedDeletes then count removes, MaxSiblings is
// not measured (reads merge), and Report.Mode is "orset". BrokenUnionRemove
// runs the same workload on sets merged by union, which brings removed
// elements back: the checker's resurrected count shows it.
//
// # Determinism
//
// Every decision (which client does what to which key through which node,
// which fault the nemesis applies, when a fault expires) is taken by the
// simulation's own goroutine between steps, from one math/rand/v2 source
// seeded by SimConfig.Seed and from the simulation's state and fake clock,
// which replay with it. Each step runs to completion (a WaitGroup, then
// synctest.Wait) before the next is drawn. Incarnations come from Config.Rand,
// seeded from the same source.
//
// Goroutines that run at the same fake instant run in an order the Go
// scheduler picks, so the network keeps the outcome independent of that order
// wherever it can:
//
//   - Drops, lost replies, duplicates and jitter are not drawn from memnet's
//     shared source, whose draws follow the order of concurrent calls. They are
//     a hash of (seed, sender, receiver, 1ms slot of fake time). memnet
//     supplies partitions, isolation and one-way blocks.
//   - Every link has its own fixed latency (0.5-1.5ms), so the replies of one
//     fan-out arrive at distinct instants and "the first R replies" is fixed.
//   - Every link ends a call a little before its deadline, by its own amount,
//     so calls of one fan-out that time out fail in a fixed order, and a
//     handler that gives up at the caller's deadline replies after the caller
//     stopped waiting, never at the same instant. A duplicate arrives a little
//     after its original.
//   - Nodes start at distinct instants, so their handoff and anti-entropy
//     tickers do not fire in lockstep, and clients start at distinct offsets.
//
// What remains is work the stores start at one instant on several nodes, such
// as the hint deliveries every node starts when membership changes. In
// practice the Report, including its Fingerprint of every decision, every
// operation's outcome and fake end time and the final state, is identical
// across runs of one build. The race detector's build shuffles the scheduler
// and differs from the normal build on a few seeds in a hundred, while
// replaying itself; TestSim_Replay checks one seed.
//
// # Caveats
//
//   - Convergence compares the bytes each replica's Storage holds under the
//     one storage key that ends with the workload key (the store prefixes its
//     data keys; hints are checked through Store.Stats).
//   - The resurrection check is sound but can be weak under heavy faults: any
//     failed write that carried an element since the replicas were last in
//     sync excuses it.
//   - RunT needs a *testing.T: testing/synctest bubbles exist only in tests,
//     so there is no Run for callers outside tests. Outside a bubble the same
//     run would wait on real timeouts and could not replay.
package dynamotest
