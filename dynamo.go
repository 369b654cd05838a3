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
//	if err := st.Put(ctx, []byte("cart:alice"), []byte("book"), dynamo.Context{}); err != nil { ... }
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
//   - The first time a node writes a key it holds nothing of, it takes a fresh
//     actor epoch (DESIGN §2, kv679), so a key's context holds one entry per
//     coordinating node and epoch; it is bounded by Limits.MaxContextSize.
//   - Tombstones are purged after TombstoneGrace by the purging node's clock;
//     clock skew shortens the grace.
package dynamo

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamo-kv/dynamo/membership"
	"github.com/dynamo-kv/dynamo/transport"
)

// Storage key spaces. Data keys are prefixed by their partition so a
// partition is one contiguous range.
const (
	spaceData = 'd'
	spaceMeta = 'm'
)

var (
	metaIncarnation = []byte("mincarnation")
	metaPartitions  = []byte("mpartitions")
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
	actor       string
	cluster     uint32 // stamped on contexts
	wireCluster uint32 // stamped on messages: cluster name and partitions
	members     Membership
	ring        atomic.Pointer[ring]

	bg       context.Context
	stop     context.CancelFunc
	bgMu     sync.RWMutex
	closing  bool
	wg       sync.WaitGroup
	closeErr error
	once     sync.Once

	stats      storeStats
	hints      *hintStore
	tree       *hashTree
	tombstones tombstoneSet
	aePace     pacer
	transfer   *transferState
	epochs     epochLease
	forwarded  dedupe
	health     peerHealth
	reads      readCoalescer // concurrent Gets of a key share reads (coalesce.go)
	hot        hotKeys       // the keys callers ask for most (hotkeys.go)
	shared     sharedCache   // partitions shared with each peer, per ring (sharedcache.go)
	handover   handover      // partitions a leaving node pushed here (handover.go)
	reqSeq     atomic.Uint64
	reqBase    uint64
	pingReq    []byte
	batchBytes int            // the byte budget of one batch on the wire (batchBytesFor)
	ops        sync.WaitGroup // requests in flight, waited for by Close
}

type storeStats struct {
	readRepairs atomic.Int64
	purged      atomic.Int64
	coalesced   atomic.Int64
}

// Stats are counters of a Store's background work since it started.
type Stats struct {
	ReadRepairs int64     `json:"read_repairs"` // replicas sent a merged state after a Get
	Hints       HintStats `json:"hints"`
	// PendingTransfers is the partitions this node still has to pull.
	PendingTransfers int `json:"pending_transfers"`
	// PartitionsPulled and PartitionsDropped count finished transfers: pulls
	// of newly owned partitions, and drops of partitions handed to their owners.
	PartitionsPulled  int64 `json:"partitions_pulled"`
	PartitionsDropped int64 `json:"partitions_dropped"`
	// Transfer totals what this node's pulls and pushes of partitions moved:
	// round trips, keys and bytes each way.
	Transfer SyncResult `json:"transfer"`
	// TombstonesPurged counts the tombstone-only keys this node purged, as
	// the first primary of each, once every primary held them.
	TombstonesPurged int64 `json:"tombstones_purged"`
	// CoalescedGets counts the Gets that waited for a quorum read shared
	// with concurrent Gets of the same key (coalesce.go) instead of
	// starting one of their own.
	CoalescedGets int64 `json:"coalesced_gets"`
	// HotKeys are the keys this node's callers asked for most lately, most
	// requested first (see HotKey).
	HotKeys []HotKey `json:"hot_keys"`
}

// Stats returns the Store's counters.
func (s *Store) Stats() Stats {
	s.transfer.mu.Lock()
	pulled, dropped, wire := s.transfer.pulls, s.transfer.drops, s.transfer.wire
	s.transfer.mu.Unlock()
	return Stats{ReadRepairs: s.stats.readRepairs.Load(), Hints: s.hintStats(), PendingTransfers: s.PendingTransfers(),
		PartitionsPulled: pulled, PartitionsDropped: dropped, Transfer: wire, TombstonesPurged: s.stats.purged.Load(),
		CoalescedGets: s.stats.coalesced.Load(), HotKeys: s.hot.top()}
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
		hints:       newHintStore(),
		tree:        newHashTree(cfg.Partitions),
		transfer:    newTransferState(),
		tombstones:  tombstoneSet{keys: map[string]struct{}{}},
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
	inc, err := s.loadIncarnation()
	if err != nil {
		return nil, err
	}
	s.actor = cfg.NodeID + "/" + inc
	// Forwarded-request IDs must not repeat across runs of one actor (a clean
	// restart keeps it), or a replica's dedupe table would swallow new writes.
	var rb [8]byte
	src := cfg.Rand
	if src == nil {
		src = rand.Reader
	}
	if _, err := io.ReadFull(src, rb[:]); err != nil {
		return nil, fmt.Errorf("dynamo: request-id entropy: %w", err)
	}
	s.reqBase = binary.BigEndian.Uint64(rb[:])
	s.pingReq = encodeMessage(&message{Version: protocolVersion, Kind: kindPing, Cluster: s.wireCluster})
	s.bg, s.stop = context.WithCancel(context.Background())
	s.rebuildRing()
	if err := s.loadHints(); err != nil {
		return nil, fmt.Errorf("dynamo: load hints: %w", err)
	}
	if err := s.rebuildTree(); err != nil {
		return nil, fmt.Errorf("dynamo: rebuild hash tree: %w", err)
	}
	changes, cancel := s.members.Subscribe()
	s.wg.Add(4)
	go s.watchMembers(changes, cancel)
	go func() {
		defer s.wg.Done()
		s.transferLoop(s.bg)
	}()
	go func() {
		defer s.wg.Done()
		s.handoffLoop(s.bg)
	}()
	go func() {
		defer s.wg.Done()
		s.antiEntropyLoop(s.bg)
	}()
	if err := cfg.Transport.Serve(s.handle); err != nil {
		s.Close()
		return nil, fmt.Errorf("dynamo: serve: %w", err)
	}
	s.log.Info("store started", "actor", s.actor, "members", len(s.ring.Load().members))
	return s, nil
}

// loadIncarnation returns the node's incarnation, creating a random one on
// empty storage (DESIGN §2, Riak kv679): a node that lost its data never
// reissues the dots of its earlier life. It also pins Partitions.
func (s *Store) loadIncarnation() (string, error) {
	st := s.cfg.Storage
	var want [4]byte
	binary.BigEndian.PutUint32(want[:], uint32(s.cfg.Partitions))
	err := st.Update(metaPartitions, func(cur []byte) ([]byte, error) {
		if cur == nil {
			return want[:], nil
		}
		if len(cur) != 4 {
			return nil, fmt.Errorf("%w: partitions record of %d bytes", ErrCorrupt, len(cur))
		}
		if got := binary.BigEndian.Uint32(cur); got != uint32(s.cfg.Partitions) {
			return nil, fmt.Errorf("%w: storage was created with Partitions %d, Config.Partitions is %d", ErrInvalidConfig, got, s.cfg.Partitions)
		}
		return cur, nil
	})
	if err != nil {
		return "", fmt.Errorf("dynamo: open storage: %w", err)
	}
	fresh := make([]byte, 6)
	src := s.cfg.Rand
	if src == nil {
		src = rand.Reader
	}
	if _, err := io.ReadFull(src, fresh); err != nil {
		return "", fmt.Errorf("dynamo: incarnation entropy: %w", err)
	}
	var inc []byte
	err = st.Update(metaIncarnation, func(cur []byte) ([]byte, error) {
		if cur != nil {
			if len(cur) != 6 {
				return nil, fmt.Errorf("%w: incarnation record of %d bytes", ErrCorrupt, len(cur))
			}
			inc = slices.Clone(cur)
			return cur, nil
		}
		inc = fresh // first start, or the storage was lost: a new actor
		return fresh, nil
	})
	if err != nil {
		return "", fmt.Errorf("dynamo: open storage: %w", err)
	}
	return hex.EncodeToString(inc), nil
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
			s.rebuildRing()
			s.health.membershipChanged(s.members.Reachable)
			s.resetBackoff()
		case <-s.bg.Done():
			return
		}
	}
}

// goBackground runs fn in a goroutine that Close waits for. fn's context ends
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
	s.bgMu.RUnlock()
	go func() {
		defer s.wg.Done()
		fn(s.bg)
	}()
}

// Close stops serving peers, ends background work and waits for it. It does
// not close the Transport, Storage or Membership. It is idempotent.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.bgMu.Lock()
		s.closing = true
		s.bgMu.Unlock()
		s.ops.Wait()
		s.stop()
		s.wg.Wait()
	})
	return s.closeErr
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
	st, err := s.localRead(key)
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

// PreferenceList returns the first n nodes of key's preference list, best
// first: the first N are its replicas, the rest its fallbacks. The caller owns
// the slice.
func (s *Store) PreferenceList(key []byte, n int) []Member {
	r := s.ring.Load()
	return r.preference(r.partition(key), n)
}

func (s *Store) checkKey(key []byte) error {
	switch {
	case len(key) == 0:
		return ErrEmptyKey
	case len(key) > s.cfg.Limits.MaxKeySize:
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrKeyTooLarge, len(key), s.cfg.Limits.MaxKeySize)
	}
	return nil
}

func (s *Store) dataKey(r *ring, key []byte) []byte {
	k := make([]byte, 5+len(key))
	k[0] = spaceData
	binary.BigEndian.PutUint32(k[1:5], uint32(r.partition(key)))
	copy(k[5:], key)
	return k
}

// Get reads key from R of its N replicas (WithR overrides R) and returns its
// live siblings and the context that covers them. A missing or deleted key
// returns no siblings, no error, and a context (which, after a delete, covers
// the tombstone). With a Resolver configured, at most one sibling is returned.
// The returned values are owned by the caller. Failing to reach R replicas
// returns a *QuorumError matching ErrReadQuorum.
func (s *Store) Get(ctx context.Context, key []byte, opts ...Option) ([]Sibling, Context, error) {
	if !s.beginOp() {
		return nil, Context{}, ErrClosed
	}
	defer s.ops.Done()
	if err := s.checkKey(key); err != nil {
		return nil, Context{}, err
	}
	o, err := s.options(opts)
	if err != nil {
		return nil, Context{}, err
	}
	key = slices.Clone(key) // read repair may outlive the call
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	s.hot.record(key, false)
	st, shared, err := s.coalescedRead(ctx, key, o)
	if err != nil {
		return nil, Context{}, err
	}
	c := Context{vv: st.VV}
	if len(st.VV) > 0 {
		c.cluster = s.cluster
	}
	live := st.live()
	sibs := make([]Sibling, len(live))
	var newest int64
	for i, sb := range live {
		v := sb.Value
		if shared { // other callers got the same state: each owns its copy
			v = slices.Clone(v)
		}
		sibs[i] = Sibling{Value: v, Timestamp: time.Unix(0, sb.Time)}
		newest = max(newest, sb.Time)
	}
	if s.cfg.Resolver != nil && len(sibs) > 1 {
		v, err := s.cfg.Resolver(key, sibs)
		if err != nil {
			return nil, Context{}, fmt.Errorf("%w: key %q: %w", ErrResolve, key, err)
		}
		sibs = []Sibling{{Value: v, Timestamp: time.Unix(0, newest)}}
	}
	return sibs, c, nil
}

// Put writes value under key, superseding the siblings that c covers (pass
// the Context from Get; the zero Context supersedes nothing). It returns once
// W replicas (WithW overrides W) hold the write durably, or a *QuorumError
// matching ErrWriteQuorum. A failed Put may still have been stored by some
// replicas. Put only reads key and value; the caller may reuse them
// afterwards.
//
// Put returns no new context, on purpose: the version it created may sit
// beside concurrent siblings the caller never saw, and a context covering
// them would let the next write discard them. To write the key again, Get
// it first (Modify does both), or the writes become siblings of each other.
func (s *Store) Put(ctx context.Context, key, value []byte, c Context, opts ...Option) error {
	if len(value) > s.cfg.Limits.MaxValueSize {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrValueTooLarge, len(value), s.cfg.Limits.MaxValueSize)
	}
	if value == nil {
		value = []byte{}
	}
	return s.write(ctx, "put", key, value, false, c, opts)
}

// Delete removes key by writing a tombstone that supersedes the siblings c
// covers. Siblings c does not cover survive (they were written concurrently).
// It returns like Put.
func (s *Store) Delete(ctx context.Context, key []byte, c Context, opts ...Option) error {
	return s.write(ctx, "delete", key, nil, true, c, opts)
}

func (s *Store) write(ctx context.Context, op string, key, value []byte, tombstone bool, c Context, opts []Option) error {
	if !s.beginOp() {
		return ErrClosed
	}
	defer s.ops.Done()
	if err := s.checkKey(key); err != nil {
		return err
	}
	if err := s.checkContext(c); err != nil {
		return err
	}
	key = slices.Clone(key) // replica writes may outlive the call
	o, err := s.options(opts)
	if err != nil {
		return err
	}
	s.hot.record(key, true)
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	primaries, _ := s.placement(key, true)
	if len(primaries) == 0 {
		return ErrNoReplica
	}
	value = slices.Clone(value)
	if slices.ContainsFunc(primaries, func(m Member) bool { return m.ID == s.cfg.NodeID }) {
		return s.coordinate(ctx, op, key, value, tombstone, c.vv, min(o.w, len(primaries)), o.primariesOnly)
	}
	return s.forward(ctx, op, key, value, tombstone, c.vv, o, primaries)
}

func (s *Store) checkContext(c Context) error {
	if c.IsZero() {
		return nil
	}
	if c.cluster != s.cluster {
		return fmt.Errorf("%w: issued by another cluster than %q", ErrBadContext, s.cfg.Cluster)
	}
	if n := c.encodedSize(); n > s.cfg.Limits.MaxContextSize {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrBadContext, n, s.cfg.Limits.MaxContextSize)
	}
	return nil
}

// placement returns key's N primaries and, unless primariesOnly, its
// reachable fallbacks in preference-list order, those in zones without a
// reachable primary first (zoneFallbacks).
func (s *Store) placement(key []byte, primariesOnly bool) (primaries, fallbacks []Member) {
	r := s.ring.Load()
	p := r.partition(key)
	if primariesOnly {
		return r.preference(p, s.cfg.N), nil
	}
	pref := r.preference(p, r.keep)
	primaries = pref[:min(s.cfg.N, len(pref))]
	for _, m := range pref[len(primaries):] {
		if s.reachable(m.ID) {
			fallbacks = append(fallbacks, m)
		}
	}
	return primaries, s.zoneFallbacks(r, primaries, fallbacks)
}

// reachable reports whether id is up by both the membership's failure
// detector and this node's own (peers.go).
func (s *Store) reachable(id string) bool {
	return id == s.cfg.NodeID || (s.members.Reachable(id) && !s.health.suspect(id, time.Now()))
}

// readTargets is the first N reachable nodes of the preference list (§4.6):
// during an outage a read reaches the fallbacks that took its writes. When
// fewer than N are believed up, the primaries that only this node's own
// failure detector suspects (peers.go) make up the number, and when nobody
// is believed up at all, the primaries are tried anyway: a read is never
// failed without asking.
func (s *Store) readTargets(primaries, fallbacks []Member) []Member {
	out := make([]Member, 0, len(primaries))
	for _, m := range primaries {
		if s.reachable(m.ID) {
			out = append(out, m)
		}
	}
	for _, m := range fallbacks {
		if len(out) == len(primaries) {
			break
		}
		out = append(out, m)
	}
	for _, m := range primaries {
		if len(out) < len(primaries) && !slices.Contains(out, m) && s.members.Reachable(m.ID) {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return primaries
	}
	return out
}

// coordinate runs a write on this node, a replica of key: it mints the new
// version durably in local storage (mintDurably), then replicates the key's new state to the other
// primaries and waits for w durable acknowledgements, its own included. A
// primary that is unreachable, or whose write fails, is replaced by the next
// reachable fallback, which keeps the state as a hint (§4.6 sloppy quorum).
// With primariesOnly there are no fallbacks, and a write that cannot reach w
// primaries by the failure detector's account fails before writing anything.
func (s *Store) coordinate(ctx context.Context, op string, key, value []byte, tombstone bool, cvv versionVector, w int, primariesOnly bool) error {
	primaries, fallbacks := s.placement(key, primariesOnly)
	if primariesOnly {
		up, down := 0, map[string]error{}
		for _, m := range primaries {
			if s.reachable(m.ID) {
				up++
			} else {
				down[m.ID] = errors.New("unreachable (primaries only)")
			}
		}
		if up < w {
			return &QuorumError{Op: op, Need: w, Got: 0, PerReplica: down}
		}
	}
	now := s.cfg.Clock().UnixNano()
	next, enc, err := s.mintDurably(key, value, tombstone, cvv, now)
	if err != nil {
		if errors.Is(err, ErrTooManySiblings) || errors.Is(err, ErrValueTooLarge) || errors.Is(err, ErrCorrupt) {
			return err
		}
		return &QuorumError{Op: op, Need: w, PerReplica: map[string]error{s.cfg.NodeID: err}}
	}
	var pool *fallbackPool
	if !primariesOnly {
		pool = &fallbackPool{list: fallbacks}
	}
	others := slices.DeleteFunc(slices.Clone(primaries), func(m Member) bool { return m.ID == s.cfg.NodeID })
	return s.writeAll(ctx, op, key, next, enc, others, pool, w, 1)
}

func (s *Store) checkMint(key []byte, st state, cvv versionVector) error {
	if n := concurrentCount(st, cvv) + 1; n > s.cfg.Limits.MaxSiblings {
		return fmt.Errorf("%w: key %q would hold %d siblings, the limit is %d", ErrTooManySiblings, key, n, s.cfg.Limits.MaxSiblings)
	}
	return nil
}

func errStateTooLarge(key []byte, n, limit int) error {
	return fmt.Errorf("%w: key %q would hold %d bytes of siblings, the limit is %d", ErrValueTooLarge, key, n, limit)
}

// forward hands a write to a replica of key, which coordinates it (only a
// replica may mint the write's dot). It tries the replicas in preference
// order, skipping those believed down, and pings each first with the replica
// timeout: a silent replica is replaced by the next before it is handed the
// write, so the write is never coordinated twice (two coordinators would mint
// two dots: one write, two siblings). A replica that answered the ping gets
// the write with the time that is left, and a write that then goes
// unanswered is not tried elsewhere: it may have been applied.
//
// When no replica could be handed the write, the error matches both
// ErrNoReplica and ErrWriteQuorum (it wraps a *QuorumError with Got 0).
func (s *Store) forward(ctx context.Context, op string, key, value []byte, tombstone bool, cvv versionVector, o options, replicas []Member) error {
	reqID := mix64(s.reqBase + s.reqSeq.Add(1))
	errs := map[string]error{}
	for _, m := range replicas {
		if !s.reachable(m.ID) {
			errs[m.ID] = errUnreachable
			continue
		}
		if err := s.ping(ctx, m); err != nil {
			errs[m.ID] = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		budget := o.timeout
		if dl, ok := ctx.Deadline(); ok {
			budget = time.Until(dl)
		}
		msg := &message{
			Version: protocolVersion, Kind: kindPut, Cluster: s.wireCluster, Key: key,
			Value: value, Tombstone: tombstone, Context: cvv, W: o.w, TimeoutMS: max(1, budget.Milliseconds()),
			ReqID: reqID,
		}
		if o.primariesOnly {
			msg.Flags |= flagPrimariesOnly
		}
		resp, err := s.callObserved(ctx, ctx, m, encodeMessage(msg))
		if err == nil {
			if resp.Kind != kindAck {
				return fmt.Errorf("%w: %s answered a put with %v", ErrProtocol, m.ID, resp.Kind)
			}
			return nil
		}
		var qe *QuorumError
		if errors.As(err, &qe) {
			qe.Op = op
			return qe
		}
		if errors.Is(err, ErrTooManySiblings) || errors.Is(err, ErrValueTooLarge) || errors.Is(err, ErrBadContext) {
			return err
		}
		errs[m.ID] = err
		if ctx.Err() != nil || !errors.Is(err, ErrNoReplica) && !errors.Is(err, ErrClosed) {
			// Out of time, or the replica took the write and failed it:
			// it may or may not have been applied.
			return &QuorumError{Op: op, Need: o.w, PerReplica: errs}
		}
		// It declined before minting (not a replica in its ring, or
		// closing): the next one may take it.
	}
	return fmt.Errorf("%w: %w", ErrNoReplica, &QuorumError{Op: op, Need: o.w, PerReplica: errs})
}

// ping asks m whether it is up, with the replica timeout. A peer that answers
// with a protocol error (an older release) is up too.
func (s *Store) ping(ctx context.Context, m Member) error {
	_, err := s.call(ctx, m, s.pingReq)
	if err != nil && !errors.Is(err, ErrProtocol) {
		return err
	}
	return nil
}

// localRead returns this node's state of key, merged with any hints it holds
// for the key as a fallback.
func (s *Store) localRead(key []byte) (state, error) {
	raw, err := s.cfg.Storage.Get(s.dataKey(s.ring.Load(), key))
	if err != nil {
		return state{}, err
	}
	st, err := decodeState(raw)
	if err != nil {
		return state{}, err
	}
	hinted, err := s.hintedState(key)
	if err != nil {
		return state{}, err
	}
	return syncStates(st, hinted), nil
}

// localMerge merges st into this node's state of key, durably.
func (s *Store) localMerge(key []byte, st state) error {
	return s.updateData(key, func(cur []byte) ([]byte, bool, error) {
		old, err := decodeState(cur)
		if err != nil {
			return nil, false, err
		}
		merged := syncStates(old, st)
		if sameVersion(merged, old) && cur != nil {
			return slices.Clone(cur), onlyTombstones(old), nil
		}
		return encodeState(merged), onlyTombstones(merged), nil
	})
}

// handle serves one request from a peer. It never panics on bad input: a
// malformed request gets an error reply.
func (s *Store) handle(ctx context.Context, raw []byte) ([]byte, error) {
	m, err := decodeMessage(raw)
	if err != nil {
		return s.errorMessage(err), nil
	}
	if m.Cluster != s.wireCluster {
		return s.errorMessage(fmt.Errorf("%w: message from another cluster or partition count", ErrProtocol)), nil
	}
	if !s.beginOp() {
		return s.errorMessage(ErrClosed), nil
	}
	defer s.ops.Done()
	switch m.Kind {
	case kindAERanges, kindAEKeys, kindAEExchange:
		return s.handleAE(m), nil
	case kindPing:
		return s.ackMessage(), nil
	}
	if err := s.checkKey(m.Key); err != nil {
		return s.errorMessage(err), nil
	}
	switch m.Kind {
	case kindPurge:
		if len(m.Hashes) != 1 {
			return s.errorMessage(fmt.Errorf("%w: purge without a digest", ErrProtocol)), nil
		}
		if err := s.localPurge(m.Key, m.Hashes[0]); err != nil {
			return s.errorMessage(err), nil
		}
		return s.ackMessage(), nil
	case kindGet:
		st, err := s.localRead(m.Key)
		if err != nil {
			return s.errorMessage(err), nil
		}
		if m.Flags&flagNoReadThrough == 0 {
			st = s.readThrough(ctx, m.Key, st)
		}
		return encodeMessage(&message{Version: protocolVersion, Kind: kindGetReply, Cluster: s.wireCluster, State: encodeState(st)}), nil
	case kindReplicate:
		st, err := decodeState(m.State)
		if err != nil {
			return s.errorMessage(err), nil
		}
		if m.Hint != "" && m.Hint != s.cfg.NodeID {
			err = s.storeHint(m.Hint, m.Key, st)
		} else {
			err = s.localMerge(m.Key, st)
		}
		if err != nil {
			return s.errorMessage(err), nil
		}
		return s.ackMessage(), nil
	case kindPut:
		return s.handlePut(ctx, m), nil
	}
	return s.errorMessage(fmt.Errorf("%w: unknown message kind %v", ErrProtocol, m.Kind)), nil
}

func (s *Store) ackMessage() []byte {
	return encodeMessage(&message{Version: protocolVersion, Kind: kindAck, Cluster: s.wireCluster})
}

// handlePut coordinates a write forwarded by a node that is not a replica. A
// request delivered twice (same ReqID) is coordinated once.
func (s *Store) handlePut(ctx context.Context, m *message) []byte {
	if m.ReqID == 0 {
		return s.coordinateForwarded(ctx, m)
	}
	f, first := s.forwarded.begin(m.ReqID, 2*s.cfg.RequestTimeout)
	if !first {
		select {
		case <-f.done:
			return f.reply
		case <-ctx.Done():
			return s.errorMessage(ctx.Err())
		}
	}
	reply := s.coordinateForwarded(ctx, m)
	s.forwarded.end(f, reply)
	return reply
}

func (s *Store) coordinateForwarded(ctx context.Context, m *message) []byte {
	if !m.Tombstone && len(m.Value) > s.cfg.Limits.MaxValueSize {
		return s.errorMessage(fmt.Errorf("%w: %d bytes, the limit is %d", ErrValueTooLarge, len(m.Value), s.cfg.Limits.MaxValueSize))
	}
	c := Context{cluster: s.cluster, vv: m.Context}
	if err := s.checkContext(c); err != nil {
		return s.errorMessage(err)
	}
	r := s.ring.Load()
	replicas := r.preference(r.partition(m.Key), s.cfg.N)
	if !slices.ContainsFunc(replicas, func(mb Member) bool { return mb.ID == s.cfg.NodeID }) {
		return s.errorMessage(fmt.Errorf("%w: %s is not a replica of the key", ErrNoReplica, s.cfg.NodeID))
	}
	w := m.W
	if w < 1 || w > s.cfg.N {
		return s.errorMessage(fmt.Errorf("%w: W (%d) must be between 1 and N (%d)", ErrBadOption, w, s.cfg.N))
	}
	timeout := time.Duration(m.TimeoutMS) * time.Millisecond
	if timeout <= 0 || timeout > s.cfg.RequestTimeout {
		timeout = s.cfg.RequestTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	op := "put"
	if m.Tombstone {
		op = "delete"
	}
	value := m.Value
	if m.Tombstone {
		value = nil
	} else if value == nil {
		value = []byte{}
	}
	primariesOnly := m.Flags&flagPrimariesOnly != 0 || s.cfg.PrimariesOnly
	if err := s.coordinate(ctx, op, m.Key, value, m.Tombstone, m.Context, min(w, len(replicas)), primariesOnly); err != nil {
		return s.errorMessage(err)
	}
	return s.ackMessage()
}
