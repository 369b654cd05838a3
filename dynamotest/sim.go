// sim.go: RunT, the simulated cluster and its step loop (TESTING §3).
package dynamotest

import (
	"encoding/binary"
	"fmt"
	"hash"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/membership"
	"github.com/dynamo-kv/dynamo/storage"
	"github.com/dynamo-kv/dynamo/storage/memory"
	"github.com/dynamo-kv/dynamo/transport/memnet"
)

// Settings of the simulated stores and network.
const (
	partitions     = 64
	replicaTimeout = 100 * time.Millisecond
	requestTimeout = 500 * time.Millisecond
	maxStagger     = 2 * time.Millisecond
	startGap       = time.Millisecond // fake time after a node starts
	brokenProb     = 0.5
	handoffEvery   = 100 * time.Millisecond
	handoffBackoff = time.Second
	// antiEntropyEvery is the stores' Merkle anti-entropy interval, after
	// which each purges the tombstones older than tombstoneGrace that every
	// primary holds. Config.TombstoneGrace must exceed the longest a hint stays
	// undelivered (faultTTL+3s+handoffBackoff+handoffEvery, 6.1s) plus
	// twice the largest clock skew (the purge compares clocks of two nodes).
	antiEntropyEvery = time.Second
	tombstoneGrace   = 12 * time.Second
	// restAfterDelete is how long a key takes no adds after an acknowledged
	// Delete, so that its tombstone gets purged and the purge is exercised.
	restAfterDelete = tombstoneGrace + 2*antiEntropyEvery
	// convergeTick is the fake time between convergence rounds, and
	// maxConvergeRounds bounds their number.
	convergeTick      = 50 * time.Millisecond
	maxConvergeRounds = 60
)

// RunT runs one simulation inside a testing/synctest bubble, checks it and
// returns the Report. It fails t only if the simulation cannot run (an invalid
// SimConfig, a store that does not start); broken promises are in the
// Report's Violations, and Report.Err returns them. RunT must not be called
// from inside a bubble.
func RunT(t *testing.T, cfg SimConfig) Report {
	t.Helper()
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	var rep Report
	var runErr error
	synctest.Test(t, func(t *testing.T) {
		s := newSim(cfg)
		defer s.shutdown()
		rep, runErr = s.run()
	})
	if runErr != nil {
		t.Fatalf("dynamotest: seed %d: %v", cfg.Seed, runErr)
	}
	return rep
}

// sim is one simulated run. Its fields are used by the simulation's goroutine
// only, except where noted.
type sim struct {
	cfg     SimConfig
	rng     *rand.Rand
	t0      time.Time
	net     *memnet.Network
	faults  *faults
	members *membership.Static
	nodes   []*node
	keys    [][]byte
	merge   dynamo.Merge[[]int64]

	ops         []*op
	steps       []stepInfo // per client step
	counters    []int64    // per client: elements added so far
	amnesiaUsed bool
	netFault    bool          // a partition, isolation, bridge or block is in place
	netFaultAt  time.Duration // when it began
	chaosOn     bool          // random message faults are on
	chaosAt     time.Duration // since when
	amnesiaAt   []time.Duration
	faultCount  int
	trace       hash.Hash64 // the decision sequence
	err         error       // first setup failure

	mu          sync.Mutex // guards inflight and maxInflight, used by operations
	inflight    []int
	maxInflight int

	restUntil []time.Duration // per key: no adds before, so its tombstone can be purged

	pad        atomic.Int64  // the large-values fault: the size written values are padded to
	largeAt    time.Duration // when it began
	codec      setCodec
	zone       zoneState    // SimConfig.ZoneOutage's progress
	lossHealed bool         // in PartialLoss and AmnesiaHeavy runs: replicas found in sync since the last loss
	losses     int          // data losses the nemesis caused
	storeStats dynamo.Stats // summed over the stores that stopped
}

// stepInfo describes the cluster when a client step began.
type stepInfo struct {
	at     time.Duration
	quiet  bool // every node up, no hint pending, and trusted
	synced bool // quiet, and every primary of every key holds the same bytes
	down   int  // nodes down
	// trusted: no network fault or chaos, and no running node's own failure
	// detector suspects another running node, so reads go to the nodes the
	// simulation holds up (a suspected primary is replaced by a fallback).
	trusted bool
}

// node is one simulated server. st and tr are nil while it is down.
type node struct {
	idx      int
	id       string
	mem      *memory.Store   // the node's disk
	disk     storage.Storage // mem, or mem behind a broken wrapper
	tr       *faultTransport
	st       *dynamo.Store
	amnesiac bool          // its disk is lost: restart on a fresh one
	snap     *memory.Store // an earlier copy of its disk (PartialLoss), or nil
	snapAt   time.Duration
	downAt   time.Duration // when it crashed
	skew     atomic.Int64  // clock offset in nanoseconds, read by the Store
}

func newSim(cfg SimConfig) *sim {
	seed := uint64(cfg.Seed)
	s := &sim{
		cfg:       cfg,
		rng:       rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)),
		t0:        time.Now(),
		net:       memnet.New(memnet.Options{Seed: cfg.Seed, MaxFrameSize: frameSize(cfg)}),
		faults:    &faults{seed: mix64(seed + 0x632be59bd9b4e019)},
		counters:  make([]int64, cfg.Clients),
		inflight:  make([]int, cfg.Keys),
		restUntil: make([]time.Duration, cfg.Keys),
		merge:     cfg.Merge,
		trace:     fnv.New64a(),
	}
	if s.merge == nil {
		s.merge = dynamo.Union[int64]
	}
	s.codec = setCodec{pad: &s.pad}
	s.lossHealed = true
	for k := range cfg.Keys {
		s.keys = append(s.keys, fmt.Appendf(nil, "dynamotest/set/%03d", k))
	}
	var ms []membership.Member
	for i := range cfg.Nodes {
		id := fmt.Sprintf("n%d", i)
		ms = append(ms, membership.Member{ID: id, Addr: id, Zone: s.zoneName(i)})
		s.nodes = append(s.nodes, &node{idx: i, id: id})
	}
	s.members = membership.NewStatic(ms...)
	for _, nd := range s.nodes {
		s.newDisk(nd)
		if err := s.start(nd); err != nil {
			s.fail(fmt.Errorf("start %s: %w", nd.id, err))
		}
	}
	return s
}

// frameSize is the simulated network's frame limit: small with large values,
// so that batches meet it; the default otherwise.
func frameSize(cfg SimConfig) int {
	if cfg.LargeValues {
		return largeFrame
	}
	return 0
}

// newDisk gives nd an empty disk.
func (s *sim) newDisk(nd *node) {
	if nd.mem != nil {
		_ = nd.mem.Close()
	}
	nd.mem = memory.New()
	nd.disk = nd.mem
	nd.snap = nil // a copy of the lost disk's life is no snapshot of the new one
	if s.cfg.Broken == BrokenAckBeforeCommit {
		nd.disk = &ackBeforeCommit{Storage: nd.mem, seed: s.faults.seed, node: nd.id, prob: brokenProb, suffixes: s.keys}
	}
}

// start runs a Store for nd on its disk.
func (s *sim) start(nd *node) error {
	inner, err := s.net.Listen(nd.id)
	if err != nil {
		return err
	}
	tr := newFaultTransport(inner, s.faults)
	var seed [32]byte
	for i := range 4 {
		binary.LittleEndian.PutUint64(seed[8*i:], s.rng.Uint64())
	}
	cfg := dynamo.DefaultConfig()
	cfg.NodeID = nd.id
	cfg.N, cfg.R, cfg.W = s.cfg.N, s.cfg.R, s.cfg.W
	cfg.Partitions = partitions
	cfg.Transport = tr
	cfg.Storage = nd.disk
	cfg.Membership = s.members
	cfg.ReplicaTimeout = replicaTimeout
	cfg.RequestTimeout = requestTimeout
	cfg.PrimariesOnly = s.cfg.PrimariesOnly
	cfg.NoGetCoalescing = true // which of two same-instant Gets leads a shared read is goroutine order
	cfg.Handoff.Interval = handoffEvery
	cfg.Handoff.MaxBackoff = handoffBackoff
	cfg.AntiEntropy.Interval = antiEntropyEvery
	cfg.TombstoneGrace = tombstoneGrace
	if s.cfg.LargeValues {
		cfg.Limits.MaxValueSize, cfg.Limits.MaxStateSize = largeMaxValue, largeMaxState
	}
	cfg.Clock = func() time.Time { return time.Now().Add(time.Duration(nd.skew.Load())) }
	cfg.Rand = rand.NewChaCha8(seed) // the incarnation replays with the seed
	cfg.Secrets = [][]byte{simSecret}
	switch {
	case s.cfg.Resolver != nil:
		cfg.Resolver = s.cfg.Resolver
	case s.cfg.Mode == ModeLWW:
		cfg.Resolver = dynamo.Latest
	}
	st, err := dynamo.New(cfg)
	if err != nil {
		_ = tr.Close()
		return err
	}
	nd.tr, nd.st = tr, st
	s.members.SetReachable(nd.id, true)
	// Let the start-up work settle, and give each start its own instant, so
	// that nodes' handoff and anti-entropy tickers do not fire in lockstep.
	s.advance(startGap + time.Duration(nd.idx)*startGap/7)
	return nil
}

// stop crashes nd: its Store and transport close, its disk stays as it is.
func (s *sim) stop(nd *node) {
	if nd.st == nil {
		return
	}
	s.addStats(nd.st.Stats())
	_ = nd.st.Close()
	_ = nd.tr.Close()
	nd.st, nd.tr = nil, nil
	nd.downAt = s.now()
	s.members.SetReachable(nd.id, false)
}

// restart brings a crashed nd back, on a fresh disk if it lost its own.
func (s *sim) restart(nd *node) error {
	if nd.amnesiac {
		s.newDisk(nd)
		nd.amnesiac = false
	}
	return s.start(nd)
}

// shutdown stops every node and drops their disks.
func (s *sim) shutdown() {
	for _, nd := range s.nodes {
		s.stop(nd)
		if nd.mem != nil {
			_ = nd.mem.Close()
		}
	}
}

func (s *sim) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

func (s *sim) now() time.Duration { return time.Since(s.t0) }

func (s *sim) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf("%9v "+format, append([]any{s.now()}, args...)...)
	}
}

// decide adds a decision to the trace that the Fingerprint hashes.
func (s *sim) decide(desc string) {
	fmt.Fprintf(s.trace, "%d %s\n", s.now(), desc)
}

// run drives the workload and the nemesis, heals, converges and checks.
func (s *sim) run() (Report, error) {
	if s.err != nil {
		return Report{}, s.err
	}
	for done := 0; done < s.cfg.Ops; {
		s.zoneStep(done)
		s.expire()
		s.expireLarge()
		if s.cfg.Faults && s.rng.IntN(4) == 0 {
			s.nemesis()
		} else {
			done += s.clientStep(s.cfg.Ops - done)
		}
		synctest.Wait() // let background work at this instant settle
		if s.err != nil {
			return Report{}, s.err
		}
	}
	healedAt := s.heal()
	if s.err != nil {
		return Report{}, s.err
	}
	final, converged := s.converge()
	rep := s.check(final, converged, s.now()-healedAt)
	s.zoneReport(&rep)
	return rep, nil
}

// clientStep runs up to budget operations of distinct clients concurrently
// and waits for them. It returns how many it ran.
func (s *sim) clientStep(budget int) int {
	k := 1 + s.rng.IntN(min(s.cfg.Clients, budget))
	clients := s.rng.Perm(s.cfg.Clients)[:k]
	up := s.upNodes()
	_, hints := s.pendingHints()
	info := stepInfo{at: s.now(), down: len(s.nodes) - len(up), trusted: s.trusted(up)}
	info.quiet = len(up) == len(s.nodes) && hints == 0 && info.trusted
	if info.quiet {
		info.synced, _ = s.replicasAgree()
	}
	if info.synced {
		s.lossHealed = true
	}
	s.steps = append(s.steps, info)
	var wg sync.WaitGroup
	for _, c := range clients {
		o := &op{id: len(s.ops), step: len(s.steps) - 1, client: c, key: s.rng.IntN(s.cfg.Keys)}
		resting := s.now() < s.restUntil[o.key]
		switch p := s.rng.IntN(100); {
		case s.cfg.ORSet:
			s.pickSetOp(o, c, p)
		case p < 75 && !resting:
			o.kind = opAdd
			s.counters[c]++
			o.elem = int64(c+1)*1e6 + s.counters[c]
		case p < 88 || resting || !s.deletable(o.key):
			o.kind = opRead
		default:
			o.kind = opDelete
		}
		o.node = up[s.rng.IntN(len(up))]
		o.offset = time.Duration(s.rng.Int64N(int64(maxStagger)))
		s.ops = append(s.ops, o)
		s.decide(fmt.Sprintf("op %d c%d %v key %d via n%d +%v elem %d", o.id, o.client, o.kind, o.key, o.node, o.offset, o.elem))
		st := s.nodes[o.node].st
		wg.Go(func() { s.do(o, st) })
	}
	wg.Wait()
	for _, o := range s.ops[len(s.ops)-k:] {
		s.logf("%v", o)
		if o.kind == opDelete && o.acked() && s.rests(o.key) {
			s.restUntil[o.key] = s.now() + restAfterDelete
		}
	}
	return k
}

// trusted reports whether no network fault or chaos is on and none of the
// running nodes up suspects another of them.
func (s *sim) trusted(up []int) bool {
	if s.netFault || s.chaosOn {
		return false
	}
	for _, i := range up {
		for _, j := range up {
			if !s.nodes[i].st.Reachable(s.nodes[j].id) {
				return false
			}
		}
	}
	return true
}

// deletable reports whether key k takes deletes: the first half of the keys
// do, the rest only grow, so that most acknowledged elements are checked
// strictly (an element a Delete's read saw may be gone).
func (s *sim) deletable(k int) bool { return k < (s.cfg.Keys+1)/2 }

// rests reports whether key k rests (takes no adds) for restAfterDelete after
// an acknowledged Delete, so that its tombstone gets purged: the first key
// does when another key takes deletes too.
func (s *sim) rests(k int) bool { return k == 0 && s.deletable(1) }

// advance lets d of fake time pass: the bubble's clock moves on once every
// goroutine is blocked, so background work (hinted handoff) runs meanwhile.
func (s *sim) advance(d time.Duration) {
	timer := time.NewTimer(d)
	<-timer.C
}
