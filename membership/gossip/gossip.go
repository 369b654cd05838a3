// Gossip: ring membership and failure detection over hashicorp/memberlist (§4.8).

package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/dynamo-kv/dynamo/membership"
)

// Gossip is a Membership kept by hashicorp/memberlist's SWIM gossip, with the
// ring (who joined and has not left) kept apart from reachability (whom the
// failure detector holds alive).
//
// Each node publishes a ring record (ID, data address, incarnation, left
// flag, zone) in its memberlist metadata, and receivers complete it with the
// node's gossip address, which memberlist carries itself. Records, gossip
// address included, also spread in broadcasts and in memberlist's periodic
// push/pull state exchange, and every node merges them by one rule: a later
// incarnation wins, and a leave is final for its incarnation. So:
//
//   - A node that joins is a member everywhere, and reachable while
//     memberlist holds it alive.
//   - A node that fails (memberlist declares it dead) stays a member but is
//     unreachable, also after memberlist forgets it, and on nodes that join
//     later. When a process with the same ID joins again, it is reachable
//     again.
//   - A node that calls Leave, or that an operator removes with Remove, is
//     no longer a member anywhere.
//   - Two sides of a network partition that outlasts failure detection find
//     each other again after it heals: a reconnect loop joins the members
//     memberlist does not hold alive at the gossip addresses in their
//     records (see Config.ReconnectInterval).
//
// All methods are safe for concurrent use.
type Gossip struct {
	id     string
	logger *slog.Logger
	signer Signer // nil: records are not signed
	ml     *memberlist.Memberlist
	queue  *memberlist.TransmitLimitedQueue
	size   atomic.Int64 // ring size, for the queue's retransmit limit
	closed atomic.Bool  // set before memberlist shuts down; news is ignored from then on
	subs   membership.Notifier

	mu    sync.Mutex
	view  view
	peers map[string]string // the gossip address of each node memberlist holds alive
	self  entry             // the record this node publishes about itself
	meta  []byte            // self encoded as memberlist metadata
	seeds []string          // Join's seeds, for the reconnect loop

	keyring *memberlist.Keyring // nil: gossip in the clear
	keyMu   sync.Mutex          // serializes SetSecretKeys

	life     sync.Mutex
	stopping bool
	done     chan struct{}  // closed when Close or Leave has finished
	quit     chan struct{}  // closed when Close or Leave begins; ends the reconnect loop
	loop     sync.WaitGroup // the reconnect loop
	pending  sync.WaitGroup // Joins and leave messages still in flight
}

var _ membership.Membership = (*Gossip)(nil)

// New validates cfg and starts memberlist listening as a cluster of
// one, and the reconnect loop unless cfg.ReconnectInterval is negative; Join
// adds it to an existing cluster. cfg.Seeds is not used here.
func New(cfg Config) (*Gossip, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	inc := cfg.Incarnation
	if inc == 0 {
		inc = uint64(time.Now().UnixNano())
	}
	g := &Gossip{
		id:     cfg.NodeID,
		logger: logger.With("node", cfg.NodeID),
		signer: cfg.Signer,
		self:   entry{ID: cfg.NodeID, Addr: cfg.DataAddr, Incarnation: inc, Zone: cfg.Zone},
		done:   make(chan struct{}),
		quit:   make(chan struct{}),
	}
	meta, err := encode(metaV1, metaRecord(g.self))
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	g.meta = meta
	if g.signer == nil {
		g.view.merge(g.self)
	}
	g.size.Store(1)

	var mlLogger *slog.Logger
	if cfg.Logger != nil {
		mlLogger = cfg.Logger.With("node", cfg.NodeID)
	}
	mc := cfg.memberlistConfig(newLogLogger(mlLogger))
	g.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(g.size.Load()) },
		RetransmitMult: mc.RetransmitMult,
	}
	d := &gossipDelegate{g: g}
	mc.Delegate = d
	mc.Events = d
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("membership: start gossip for %q: %w", cfg.NodeID, err)
	}
	g.ml = ml
	g.keyring = mc.Keyring // memberlist made one from SecretKey, if set
	// The address memberlist advertises is known now. Nobody has this
	// node's record yet, unless a peer dialled the bound address already:
	// that peer takes the address from memberlist and the record from the
	// next exchange.
	g.mu.Lock()
	g.self.GossipAddr = ml.LocalNode().Address()
	if g.signer == nil {
		g.view.merge(g.self)
	} else if _, err := g.sealSelf(); err != nil {
		// In a signed cluster the node's own record opens every exchange.
		g.mu.Unlock()
		_ = ml.Shutdown()
		return nil, err
	}
	g.mu.Unlock()
	if every := cfg.reconnectInterval(); every > 0 {
		g.loop.Add(1)
		go g.reconnectLoop(every)
	}
	return g, nil
}

// SetSecretKeys replaces the gossip keyring of a Gossip started with
// SecretKey or SecretKeys: keys[0] encrypts from now on, and every key
// decrypts. keys is copied. See Config.SecretKeys for the steps of a
// rotation.
func (g *Gossip) SetSecretKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return fmt.Errorf("%w: no secret key", ErrInvalidConfig)
	}
	if errs := checkKeys(keys); len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	kr := g.keyring
	if kr == nil {
		return fmt.Errorf("%w: gossip started without encryption cannot take keys", ErrInvalidConfig)
	}
	g.keyMu.Lock()
	defer g.keyMu.Unlock()
	// Install first, switch, then remove: at no point is a key in use missing.
	for _, k := range keys {
		if err := kr.AddKey(bytes.Clone(k)); err != nil {
			return fmt.Errorf("membership: install key: %w", err)
		}
	}
	if err := kr.UseKey(keys[0]); err != nil {
		return fmt.Errorf("membership: use key: %w", err)
	}
	for _, old := range kr.GetKeys() {
		if !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, old) }) {
			if err := kr.RemoveKey(old); err != nil {
				return fmt.Errorf("membership: remove key: %w", err)
			}
		}
	}
	return nil
}

// Join starts a Gossip with New and joins it to the cluster
// through cfg.Seeds; with no seeds it starts a new cluster. If no seed
// answers, it closes the Gossip and returns an error wrapping ErrJoin, unless
// cfg.JoinRetry is set: then it returns the Gossip, alone in its ring, and
// the reconnect loop keeps contacting the seeds until one answers. If ctx
// ends first, it closes the Gossip and returns ctx's error. From then on the
// reconnect loop contacts the seeds again whenever memberlist holds no other
// node alive.
func Join(ctx context.Context, cfg Config) (*Gossip, error) {
	g, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if len(cfg.Seeds) > 0 {
		if _, err := g.Join(ctx, cfg.Seeds...); err != nil {
			if !cfg.JoinRetry || !errors.Is(err, ErrJoin) {
				_ = g.Close()
				return nil, err
			}
			g.logger.Warn("membership: no seed answered; starting alone and retrying in the background", "seeds", cfg.Seeds, "err", err)
		}
	}
	g.mu.Lock()
	g.seeds = slices.Clone(cfg.Seeds)
	g.mu.Unlock()
	return g, nil
}

// Join contacts each seed ("host:port" gossip address) and exchanges full
// state with those that answer, which makes this node known to the cluster.
// It returns how many seeds answered, and an error wrapping ErrJoin when
// none did. If ctx ends first, Join returns ctx's error at once; the attempt
// goes on in the background (memberlist's joins cannot be cancelled), bounded
// by memberlist's TCP timeout, and Close and Leave wait for it.
func (g *Gossip) Join(ctx context.Context, seeds ...string) (int, error) {
	if len(seeds) == 0 {
		return 0, nil
	}
	seeds = slices.Clone(seeds)
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("membership: join %v: %w", seeds, err)
	}
	g.life.Lock()
	if g.stopping {
		g.life.Unlock()
		return 0, fmt.Errorf("membership: join %v: %w", seeds, ErrClosed)
	}
	g.pending.Add(1)
	g.life.Unlock()

	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	go func() {
		defer g.pending.Done()
		n, err := g.ml.Join(seeds)
		res <- result{n, err}
	}()
	select {
	case r := <-res:
		if r.err != nil {
			return r.n, fmt.Errorf("membership: join %v: %w: %w", seeds, ErrJoin, r.err)
		}
		g.pushSelf()
		return r.n, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("membership: join %v: %w", seeds, ctx.Err())
	}
}

// ID returns this node's ID.
func (g *Gossip) ID() string { return g.id }

// GossipAddr returns the "ip:port" other nodes use as a seed to reach this
// one, with the port chosen when BindAddr's port was 0.
func (g *Gossip) GossipAddr() string { return g.ml.LocalNode().Address() }

// Members returns the nodes that joined and have not left or been removed,
// reachable or not, sorted by ID. The caller owns the slice. After Close or
// Leave it reports the last view.
func (g *Gossip) Members() []membership.Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.view.members()
}

// Reachable reports whether id is a member and memberlist holds the current
// incarnation of it alive. A suspect node counts as reachable until
// memberlist declares it dead. It is false for IDs that are not members.
func (g *Gossip) Reachable(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.view.visible(id).reachable
}

// Subscribe returns a channel that receives a value after Members or
// Reachable changes; see Membership.Subscribe. cancel is idempotent and
// does not close the channel.
func (g *Gossip) Subscribe() (changes <-chan struct{}, cancel func()) {
	return g.subs.Subscribe()
}

// Remove takes a member out of the ring on an operator's word, typically a
// node that failed and will not come back. The removal spreads to every node
// by gossip. A process that still runs under that ID stays out of the ring
// (though Reachable is false for it, it keeps gossiping) until it restarts
// with a larger incarnation. Remove returns an error wrapping
// ErrUnknownMember if id is not a member, ErrRemoveSelf for this node's own ID
// and ErrClosed after Close or Leave.
//
// In a signed cluster (Config.Signer) the removal is signed by this node,
// and a node takes it only while it holds the member unreachable; the
// member itself, if it still runs, answers with a new incarnation and is
// back. So Remove there returns an error wrapping ErrReachable for a member
// this node holds reachable, and no member can evict a live one.
func (g *Gossip) Remove(id string) error {
	if id == g.id {
		return fmt.Errorf("membership: remove %q: %w", id, ErrRemoveSelf)
	}
	if g.closed.Load() {
		return fmt.Errorf("membership: remove %q: %w", id, ErrClosed)
	}
	if g.signer != nil {
		return g.removeSealed(id)
	}
	g.mu.Lock()
	e, ok := g.view.records[id]
	if !ok || e.Left {
		g.mu.Unlock()
		return fmt.Errorf("membership: remove %q: %w", id, ErrUnknownMember)
	}
	e.Left = true
	g.view.merge(e)
	g.broadcast(e)
	g.size.Store(int64(g.view.numMembers()))
	g.mu.Unlock()
	g.logger.Info("membership: removed member from the ring", "member", id)
	g.subs.Notify()
	return nil
}

// Leave takes this node out of the ring and shuts it down. It marks its own
// record left, sends that record over TCP to every peer memberlist holds
// alive and queues it for gossip, then makes memberlist announce the
// departure, then shuts down as Close does. Leave waits at most timeout for
// the peers to take the record and for memberlist's announcement to go out;
// with timeout <= 0 it does not wait, and peers will most likely see a
// failure instead. Sends still in flight at the deadline are not abandoned:
// Leave then waits for them, up to memberlist's TCP timeout. An error means
// the leave may not have reached every node (they learn it from the others
// in time); the node is shut down all the same. Calls after the first, and
// after Close, return nil.
func (g *Gossip) Leave(timeout time.Duration) error { return g.stop(true, timeout) }

// Close shuts the node down without leaving, as a crash would: other nodes
// keep it in the ring and report it unreachable. Like Leave, it stops the
// reconnect loop and waits for a reconnect attempt in flight, up to
// memberlist's TCP timeout. Calls after the first, and after Leave, return
// nil.
func (g *Gossip) Close() error { return g.stop(false, 0) }

// stop runs Leave or Close once; later callers wait for it and return nil.
func (g *Gossip) stop(leave bool, timeout time.Duration) error {
	g.life.Lock()
	if g.stopping {
		g.life.Unlock()
		<-g.done
		return nil
	}
	g.stopping = true
	close(g.quit)
	g.life.Unlock()
	defer close(g.done)

	var err error
	if leave {
		err = g.leave(timeout)
	}
	g.closed.Store(true)
	if serr := g.ml.Shutdown(); serr != nil {
		err = errors.Join(err, fmt.Errorf("membership: shut down gossip: %w", serr))
	}
	g.loop.Wait()
	g.pending.Wait()
	return err
}

// errLeaveTimeout is wrapped by Leave's error when time ran out.
var errLeaveTimeout = errors.New("timed out")

// maxLeaveSends bounds the TCP connections a leave opens at once.
const maxLeaveSends = 16

// leave announces this node's departure, waiting until timeout at most.
func (g *Gossip) leave(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	g.mu.Lock()
	g.self.Left = true
	if meta, err := encode(metaV1, metaRecord(g.self)); err == nil {
		g.meta = meta
	}
	var msg []byte
	var err error
	if g.signer != nil {
		msg, err = g.sealSelf()
	} else {
		g.view.merge(g.self)
		g.broadcast(g.self)
		msg, err = encode(msgEntryV1, g.self)
	}
	g.size.Store(int64(g.view.numMembers()))
	g.mu.Unlock()
	g.subs.Notify()
	if err != nil {
		return fmt.Errorf("membership: leave of %q: %w", g.id, err)
	}
	if timeout <= 0 {
		return nil
	}

	var errs []error
	// Gossip reaches every node only with high probability, and a node that
	// already holds this one dead ignores memberlist's own leave message, so
	// hand the record to each live peer directly.
	peers, sent := g.sendToPeers(msg)
	timer := time.NewTimer(max(time.Until(deadline), 0))
	defer timer.Stop()
wait:
	for range peers {
		select {
		case err := <-sent:
			if err != nil {
				errs = append(errs, err)
			}
		case <-timer.C:
			errs = append(errs, fmt.Errorf("send left record: %w", errLeaveTimeout))
			break wait
		}
	}
	// memberlist's leave, so that peers stop probing this node.
	if rem := time.Until(deadline); rem <= 0 {
		errs = append(errs, fmt.Errorf("memberlist leave: %w", errLeaveTimeout))
	} else if err := g.ml.Leave(rem); err != nil {
		errs = append(errs, fmt.Errorf("memberlist leave: %w", err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("membership: leave of %q may not have reached every node: %w", g.id, errors.Join(errs...))
	}
	return nil
}

// sendToPeers sends msg over TCP to every peer memberlist holds alive, at
// most maxLeaveSends at once, and returns how many it sends to and a
// channel with room for each send's error (nil for a success). The sends
// count in g.pending: call it from stop, or from a goBackground func.
func (g *Gossip) sendToPeers(msg []byte) (int, <-chan error) {
	// Not ml.Members(): its nodes are memberlist's own, which it changes
	// under a lock of its own.
	var peers []*memberlist.Node
	g.mu.Lock()
	for id, addr := range g.peers {
		host, port, err := net.SplitHostPort(addr)
		p, perr := strconv.ParseUint(port, 10, 16)
		if id == g.id || err != nil || perr != nil {
			continue
		}
		peers = append(peers, &memberlist.Node{Name: id, Addr: net.ParseIP(host), Port: uint16(p)})
	}
	g.mu.Unlock()
	sent := make(chan error, len(peers))
	sem := make(chan struct{}, maxLeaveSends)
	for _, n := range peers {
		g.pending.Add(1)
		go func() {
			defer g.pending.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := g.ml.SendReliable(n, msg); err != nil {
				sent <- fmt.Errorf("send ring record to %q: %w", n.Name, err)
				return
			}
			sent <- nil
		}()
	}
	return len(peers), sent
}

// goBackground runs fn in a goroutine that Close and Leave wait for, unless
// they have begun; it reports whether fn runs.
func (g *Gossip) goBackground(fn func()) bool {
	g.life.Lock()
	defer g.life.Unlock()
	if g.stopping {
		return false
	}
	g.pending.Add(1)
	go func() {
		defer g.pending.Done()
		fn()
	}()
	return true
}

// broadcast queues e for gossip. g.mu must be held.
func (g *Gossip) broadcast(e entry) {
	msg, err := encode(msgEntryV1, e)
	if err != nil {
		g.logger.Error("membership: cannot broadcast ring record", "member", e.ID, "err", err)
		return
	}
	g.queue.QueueBroadcast(&entryBroadcast{id: e.ID, msg: msg})
}

// observe applies memberlist's news of a node: its record, from metadata,
// and whether the failure detector holds it alive.
func (g *Gossip) observe(e entry, alive bool) {
	g.mu.Lock()
	before := g.view.visible(e.ID)
	if g.signer == nil {
		// In a signed cluster, metadata (which memberlist does not
		// authenticate) only tells which incarnation is alive.
		g.view.merge(e)
	}
	if alive {
		g.view.setAlive(e.ID, e.Incarnation)
		if g.peers == nil {
			g.peers = make(map[string]string)
		}
		g.peers[e.ID] = e.GossipAddr
	} else {
		g.view.setDead(e.ID)
		delete(g.peers, e.ID)
	}
	changed := g.view.visible(e.ID) != before
	g.size.Store(int64(g.view.numMembers()))
	g.mu.Unlock()
	if changed {
		g.subs.Notify()
	}
}

// learn merges records heard from peers and, when spread is set, queues the
// ones that were news for broadcast, so that they reach every node.
func (g *Gossip) learn(records []entry, spread bool) {
	changed := false
	g.mu.Lock()
	for _, e := range records {
		before := g.view.visible(e.ID)
		if !g.view.merge(e) {
			continue
		}
		if e.ID == g.id && !g.self.Left {
			g.logger.Warn("membership: a peer changed this node's ring record", "incarnation", e.Incarnation, "left", e.Left)
		}
		if spread {
			g.broadcast(g.view.records[e.ID]) // e and what the view knew besides
		}
		changed = changed || g.view.visible(e.ID) != before
	}
	g.size.Store(int64(g.view.numMembers()))
	g.mu.Unlock()
	if changed {
		g.subs.Notify()
	}
}
