// Package dynamo is an embeddable implementation of Amazon's Dynamo
// (DeCandia et al., SOSP 2007): a leaderless, replicated key/value store that a
// Go service imports as a library. Every Store is a node of the ring and runs
// the coordinator logic in-process.
//
// A key lives on the first N distinct nodes of its preference list. Get asks N
// replicas and returns once R have answered; Put returns once W have durably
// stored the write. Writes never block on each other: concurrent writes become
// siblings, and Get returns them all with an opaque Context. The application
// merges them (or sets a Resolver) and writes back with the Context, so a
// resolved conflict stays resolved.
//
//	st, err := dynamo.New(cfg) // cfg: NodeID, Transport, Storage, Members
//	if err != nil { ... }
//	defer st.Close()
//	if err := st.Put(ctx, []byte("cart:alice"), []byte("book"), dynamo.CausalContext{}); err != nil { ... }
//	sibs, c, err := st.Get(ctx, []byte("cart:alice"))
//	merged := mergeCarts(sibs)                        // siblings are concurrent versions
//	err = st.Put(ctx, []byte("cart:alice"), merged, c) // c supersedes what was read
//
// # Consistency
//
// Versions are dotted version vectors (DESIGN §2): a write supersedes exactly
// the siblings its Context covers, so no acknowledged write is lost to a
// concurrent one, even two written through the same coordinator, and siblings
// never outnumber truly concurrent writers.
//
// With R+W > N and no failures, a Get overlaps the replicas of every
// acknowledged Put and sees it (possibly beside siblings). That is all R+W > N
// promises: it is not linearizability. A Get that runs concurrently with a
// Put may or may not see it; a Put that failed its quorum may still have been
// stored on some replicas and may surface later; and when nodes fail, writes
// may land on fallback nodes (sloppy quorum). Reads go to the first N
// reachable nodes of the preference list, fallbacks included, so a read
// during the outage finds them; a read restricted to the primaries
// (WithPrimariesOnly) does not until hinted handoff brings them home.
// Anti-entropy and read repair make replicas converge once the network heals.
//
// # Caveats
//
//   - Deletes write tombstones; a tombstone supersedes only what the Delete's
//     Context covered, so an item removed from one sibling can resurface when
//     it is present in a concurrent one (the paper's shopping cart behaviour).
//   - The node's actor identity is its NodeID plus an incarnation kept in its
//     Storage. A node restarted on empty Storage takes a new incarnation;
//     NodeID must never be shared by two live nodes.
//   - Partitions can never change for a data directory.
//   - A node mints a key's versions with an actor epoch it took in its
//     current run: the first time it writes a key after it starts, after it
//     held nothing of the key, or after evidence that its record of the key
//     lost versions, it takes a fresh epoch (DESIGN §2, Riak kv679), so that
//     no version is ever issued twice, even by a node whose disk went back
//     in time. A key's context holds one entry per coordinating node and
//     epoch; it is bounded by Limits.MaxContextSize.
//   - Tombstones are purged after TombstoneGrace by the purging node's clock;
//     clock skew shortens the grace. Dead entries of a key's version vector
//     (earlier runs and incarnations of its coordinators) fold away once every
//     primary has held them for TombstoneGrace.
//   - Contexts carry a MAC keyed by Config.Secrets; without a secret it is
//     keyed by the cluster name alone, which catches accidental edits but not
//     forgery.
package dynamo

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamo-kv/dynamo/internal/workers"
	"github.com/dynamo-kv/dynamo/membership"
	"github.com/dynamo-kv/dynamo/transport"
)

// Sibling is one concurrent version of a key's value.
type Sibling struct {
	// Value is owned by the caller.
	Value []byte
	// Timestamp is the coordinator's clock when the version was written.
	// Clocks of different nodes may be skewed; it orders nothing causally.
	Timestamp time.Time
}

// Store is one node of a dynamo cluster. It serves its replicas to peers and
// coordinates the requests of the service that embeds it. All methods are
// safe for concurrent use.
type Store struct {
	cfg         Config
	log         *slog.Logger
	actor       string      // NodeID/incarnation
	cluster     uint32      // stamped on contexts
	wireCluster uint32      // stamped on messages: cluster name and partitions
	wire        *wireLimits // what a decoded message may hold
	batchBytes  int         // the byte budget of one batch on the wire (batchBytesFor)
	members     Membership
	ring        atomic.Pointer[ring]
	rep         *replica      // this node's key space (replica.go)
	readTurn    atomic.Uint64 // turns the order in which reads ask replicas

	bg      context.Context
	stop    context.CancelFunc
	bgMu    sync.RWMutex
	closing bool
	wg      sync.WaitGroup // background goroutines, waited for by Close
	work    *workers.Pool  // runs goBackground's tasks; its workers count in wg
	ops     sync.WaitGroup // requests in flight, waited for by Close
	once    sync.Once

	stats     storeStats
	handoff   *handoffState  // hint delivery (handoff.go)
	transfer  *transferState // partition transfers (transfer.go)
	aePace    *pacer         // anti-entropy and fold rounds
	forwarded dedupe         // forwarded writes by request ID (server.go)
	health    peerHealth     // this node's own failure detector (peers.go)
	reads     readCoalescer  // concurrent Gets of a key share reads (coalesce.go)
	hot       hotKeys        // the keys callers ask for most (hotkeys.go)
	shared    sharedCache    // partitions shared with each peer, per ring (sharedcache.go)
	handover  handover       // partitions a leaving node pushed here (handover.go)
	ctxKeys   atomic.Pointer[contextKeys]
	reqSeq    atomic.Uint64
	reqBase   uint64
	pingReq   []byte

	metrics *metrics              // counters and histograms (metrics.go)
	fatal   atomic.Pointer[error] // the Storage's failure, once noticed (health.go)
	errc    chan error            // Err: receives fatal once
}

// New starts a Store: it validates cfg, loads or creates the node's
// incarnation in cfg.Storage, builds the ring and starts serving cfg.Transport.
// The Store does not own the Transport, Storage or Membership: Close stops
// using them, and the caller closes them afterwards.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Store{
		cfg:         cfg,
		log:         cfg.Logger.With("node", cfg.NodeID),
		cluster:     clusterHash(cfg.Cluster),
		wireCluster: clusterHash(cfg.Cluster + "/" + strconv.Itoa(cfg.Partitions)),
		members:     cfg.Membership,
		handoff:     newHandoffState(cfg.Handoff.Rate),
		transfer:    newTransferState(),
		aePace:      newPacer(cfg.AntiEntropy.KeysPerSecond, aeBatchKeys),
		metrics:     newMetrics(),
		errc:        make(chan error, 1),
	}
	if s.members == nil {
		s.members = membership.NewStatic(cfg.Members...)
	}
	frame := transport.DefaultMaxFrameSize
	if fl, ok := cfg.Transport.(transport.FrameLimiter); ok && fl.MaxFrameSize() > 0 {
		frame = fl.MaxFrameSize()
	}
	if need := cfg.Limits.MaxStateSize + cfg.Limits.MaxKeySize + envelopeRoom; need > frame {
		return nil, fmt.Errorf("%w: Limits.MaxStateSize (%d) and Limits.MaxKeySize (%d) with %d bytes of envelope exceed the transport's frame limit (%d)",
			ErrInvalidConfig, cfg.Limits.MaxStateSize, cfg.Limits.MaxKeySize, envelopeRoom, frame)
	}
	s.batchBytes = batchBytesFor(frame)
	s.wire = limitsFor(cfg.Limits, frame)
	keys, err := newContextKeys(cfg.Cluster, cfg.Secrets)
	if err != nil {
		return nil, err
	}
	s.ctxKeys.Store(keys)
	inc, err := s.loadIncarnation()
	if err != nil {
		return nil, err
	}
	s.actor = cfg.NodeID + "/" + inc
	var eb, rb [8]byte
	if _, err := io.ReadFull(s.entropy(), eb[:]); err != nil {
		return nil, fmt.Errorf("dynamo: epoch entropy: %w", err)
	}
	s.rep = newReplica(cfg, s.log, s.actor, newRunEpochs(binary.BigEndian.Uint64(eb[:])))
	// Forwarded-request IDs must not repeat across runs of one actor (a clean
	// restart keeps it), or a replica's dedupe table would swallow new writes.
	if _, err := io.ReadFull(s.entropy(), rb[:]); err != nil {
		return nil, fmt.Errorf("dynamo: request-id entropy: %w", err)
	}
	s.reqBase = binary.BigEndian.Uint64(rb[:])
	s.pingReq = s.encode(&pingReq{})
	s.bg, s.stop = context.WithCancel(context.Background())
	s.work = workers.New(s.bg.Done(), &s.wg, 0)
	s.rebuildRing()
	background, err := s.rep.load()
	if err != nil {
		return nil, err
	}
	changes, cancel := s.members.Subscribe()
	s.wg.Add(4)
	go s.watchMembers(changes, cancel)
	for _, loop := range []func(context.Context){s.transferLoop, s.handoffLoop, s.antiEntropyLoop} {
		go func() {
			defer s.wg.Done()
			loop(s.bg)
		}()
	}
	if err := cfg.Transport.Serve(s.handle); err != nil {
		s.Close()
		return nil, fmt.Errorf("dynamo: serve: %w", err)
	}
	if background {
		s.goBackground(s.rep.indexInBackground)
	}
	s.log.Info("store started", "actor", s.actor, "members", len(s.ring.Load().members))
	return s, nil
}

// Actor returns the identity this node stamps on the versions it coordinates:
// its NodeID and incarnation.
func (s *Store) Actor() string { return s.actor }

func (s *Store) rebuildRing() {
	ms := s.members.Members()
	old := s.ring.Load()
	if old != nil && slices.Equal(old.members, ms) {
		return
	}
	if len(ms) > maxMembers {
		s.log.Error("membership lists more nodes than a ring can hold; keeping the current ring", "members", len(ms), "limit", maxMembers)
		if old != nil {
			return
		}
		ms = ms[:maxMembers]
	}
	next := nextRing(old, ms, s.cfg.Partitions, 2*s.cfg.N+2)
	s.ring.Store(next)
	s.planPulls(old, next)
}

func (s *Store) watchMembers(changes <-chan struct{}, cancel func()) {
	defer s.wg.Done()
	defer cancel()
	for {
		select {
		case <-changes:
			s.metrics.memberChanges.Add(1)
			s.rebuildRing()
			s.health.membershipChanged(s.members.Members(), s.members.Reachable, time.Now())
			s.resetBackoff()
		case <-s.bg.Done():
			return
		}
	}
}

// goBackground runs fn on a worker goroutine that Close waits for. fn's context ends
// when the Store closes. After Close has begun, fn runs inline with that
// context already ended.
func (s *Store) goBackground(fn func(ctx context.Context)) {
	s.bgMu.RLock()
	if s.closing {
		s.bgMu.RUnlock()
		fn(s.bg)
		return
	}
	s.wg.Add(1)
	s.work.Go(func() {
		defer s.wg.Done()
		fn(s.bg)
	})
	s.bgMu.RUnlock()
}

// Close stops serving peers, lets the requests in flight finish, ends
// background work and waits for it. It does not close the Transport, Storage
// or Membership. It is idempotent and returns nil: it has nothing to flush
// (every acknowledged write is already durable).
func (s *Store) Close() error {
	s.once.Do(func() {
		s.bgMu.Lock()
		s.closing = true
		s.bgMu.Unlock()
		s.ops.Wait()
		s.stop()
		s.wg.Wait()
	})
	return nil
}

// beginOp registers a request in flight; false means the Store is closing.
// The caller calls s.ops.Done when it returns.
func (s *Store) beginOp() bool {
	s.bgMu.RLock()
	defer s.bgMu.RUnlock()
	if s.closing {
		return false
	}
	s.ops.Add(1)
	return true
}

// LocalGet returns the live siblings this node alone holds for key, in its
// replica and in hints it keeps for other nodes, without asking any peer and
// without a quorum. It is for operators and tests that need to see one
// replica; applications use Get. The values are owned by the caller.
func (s *Store) LocalGet(key []byte) ([]Sibling, error) {
	if err := s.checkKey(key); err != nil {
		return nil, err
	}
	st, err := s.rep.read(partitionOf(key, s.cfg.Partitions), key)
	if err != nil {
		return nil, err
	}
	out := make([]Sibling, 0, len(st.Siblings))
	for _, sb := range st.live() {
		out = append(out, Sibling{Value: sb.Value, Timestamp: time.Unix(0, sb.Time)})
	}
	return out, nil
}

// Members returns the nodes in this node's ring, sorted by ID. The caller
// owns the slice.
func (s *Store) Members() []Member { return slices.Clone(s.ring.Load().members) }

// Reachable reports whether this node believes the node with this ID is up:
// its membership's failure detector says so, and no call to it went
// unanswered lately (the node's own detector, which backs a silent peer off
// for a while and probes it again). The Store's own ID is always reachable.
func (s *Store) Reachable(id string) bool { return s.reachable(id) }
