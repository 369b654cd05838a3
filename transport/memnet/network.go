// Package memnet implements an in-memory network of transport.Transport values with seeded fault injection (DESIGN §8, TESTING §3).
//
// # Basics
//
// A Network connects Transports by name; nothing touches a socket. Each Call
// hands a copy of the request to the peer's handler in a new goroutine and
// copies the reply back, so no byte slice is shared between nodes:
//
//	net := memnet.New(memnet.Options{Seed: 1})
//	a, _ := net.Listen("a")
//	b, _ := net.Listen("b")
//	b.Serve(func(ctx context.Context, req []byte) ([]byte, error) { return req, nil })
//	reply, err := a.Call(ctx, "b", []byte("ping"))
//
// Faults are switched on the Network: Partition, Isolate, Block (one way),
// SetDrop, SetDelay and SetDuplicate; Heal removes the reachability faults. A
// lost request or reply behaves like a lost packet: Call blocks until its ctx
// ends, then returns an error matching both transport.ErrUnreachable and the
// ctx error. A call to an address where nothing listens fails at once with
// transport.ErrUnreachable, like a refused connection.
//
// # Determinism
//
// Every random decision comes from one math/rand/v2 source seeded by
// Options.Seed and drawn under a mutex, in the order calls are made: the same
// seed and the same sequence of calls give the same drops, delays and
// duplicates. Delays wait on timers, so inside a testing/synctest bubble they
// run on the bubble's fake clock.
//
// # Caveats
//
//   - Inside a synctest bubble, create the Network and its Transports inside the
//     bubble too, and close every Transport before the bubble ends.
//   - Close waits for the transport's running handlers to return; a handler
//     must return once its ctx ends, and must not call Close on its own
//     transport.
//   - Reachability faults come first: a call across a partition is lost even
//     when nothing listens at the other end.
//   - SetDrop loses requests. To lose replies after the handler ran (the
//     write happened, the caller never heard), Block the peer's direction.
//   - Only the caller's deadline reaches the handler's ctx, not its
//     cancellation, as with a real network.
package memnet

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/dynamo-kv/dynamo/transport"
)

// Options configures a Network. The zero value is usable.
type Options struct {
	// Seed seeds the random source behind every fault decision.
	Seed int64
	// MaxFrameSize is the largest request or reply payload in bytes.
	// Zero means transport.DefaultMaxFrameSize.
	MaxFrameSize int
}

// Stats counts what a Network did with the calls made on it.
type Stats struct {
	Delivered      uint64 // requests handed to a handler, duplicates excluded
	Duplicated     uint64 // extra deliveries made because of SetDuplicate
	Dropped        uint64 // requests lost: SetDrop, Partition, Isolate or Block
	RepliesDropped uint64 // replies lost after the handler ran (Block towards the caller)
	Refused        uint64 // calls to an address where nothing listens or serves
}

// link is a one-way connection between two addresses.
type link struct{ from, to string }

// Network is a set of in-memory Transports that can reach each other by
// address, with faults injected between them. It is safe for concurrent use.
type Network struct {
	maxFrame int

	mu       sync.Mutex
	rng      *rand.Rand
	nodes    map[string]*Transport
	group    map[string]int // from Partition; unlisted addresses are group 0
	isolated map[string]bool
	blocked  map[link]bool
	drop     float64
	dup      float64
	delayMin time.Duration
	delayMax time.Duration
	stats    Stats
}

// New returns an empty Network. It panics if opts.MaxFrameSize is negative.
func New(opts Options) *Network {
	if opts.MaxFrameSize < 0 {
		panic(fmt.Sprintf("memnet: MaxFrameSize (%d) must not be negative", opts.MaxFrameSize))
	}
	maxFrame := opts.MaxFrameSize
	if maxFrame == 0 {
		maxFrame = transport.DefaultMaxFrameSize
	}
	seed := uint64(opts.Seed)
	return &Network{
		maxFrame: maxFrame,
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		nodes:    make(map[string]*Transport),
		group:    make(map[string]int),
		isolated: make(map[string]bool),
		blocked:  make(map[link]bool),
	}
}

// MaxFrameSize returns the largest payload the network carries.
func (n *Network) MaxFrameSize() int { return n.maxFrame }

// Listen returns a new Transport reachable at addr. It fails if addr is empty
// or another open Transport listens there; the address of a closed Transport
// may be listened on again, which is how a restarted node comes back.
func (n *Network) Listen(addr string) (*Transport, error) {
	if addr == "" {
		return nil, fmt.Errorf("memnet: listen: empty address")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.nodes[addr]; ok {
		return nil, fmt.Errorf("memnet: listen %q: address already in use", addr)
	}
	t := newTransport(n, addr)
	n.nodes[addr] = t
	return t, nil
}

// Partition splits the network: addresses in different groups cannot reach
// each other, and addresses in no group form one more group together. It
// replaces any earlier partition and leaves Isolate and Block in place. An
// address listed in several groups belongs to the last.
func (n *Network) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.group = make(map[string]int)
	for i, g := range groups {
		for _, addr := range g {
			n.group[addr] = i + 1
		}
	}
}

// Isolate cuts addr off from every other address, both ways, until Heal.
func (n *Network) Isolate(addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.isolated[addr] = true
}

// Block loses every message sent from one address to another until Heal:
// requests from → to are lost, and so are replies from → to, to calls that
// to made. The other direction is untouched.
func (n *Network) Block(from, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.blocked[link{from, to}] = true
}

// Heal removes every Partition, Isolate and Block. Drop, delay and duplicate
// settings stay.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.group = make(map[string]int)
	n.isolated = make(map[string]bool)
	n.blocked = make(map[link]bool)
}

// SetDrop makes each request lost with probability prob, between 0 and 1.
// It panics on a probability outside that range.
func (n *Network) SetDrop(prob float64) {
	checkProb("SetDrop", prob)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.drop = prob
}

// SetDuplicate makes each delivered request reach the handler a second time
// with probability prob, between 0 and 1; the second reply is discarded. It
// panics on a probability outside that range.
func (n *Network) SetDuplicate(prob float64) {
	checkProb("SetDuplicate", prob)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dup = prob
}

// SetDelay delays each delivered request by a duration drawn uniformly from
// [min, max]. Zero for both turns delays off. It panics if min is negative or
// greater than max.
func (n *Network) SetDelay(min, max time.Duration) {
	if min < 0 || min > max {
		panic(fmt.Sprintf("memnet: SetDelay: need 0 <= min (%v) <= max (%v)", min, max))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.delayMin, n.delayMax = min, max
}

// Stats returns the counters so far.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

func checkProb(op string, p float64) {
	if math.IsNaN(p) || p < 0 || p > 1 {
		panic(fmt.Sprintf("memnet: %s: probability (%v) must be between 0 and 1", op, p))
	}
}

// plan is what the network decided for one call, before delivery.
type plan struct {
	peer      *Transport // nil when the call is lost or refused
	lost      bool
	delay     time.Duration
	duplicate bool
}

// route decides the fate of a request from → to. Random draws happen in a
// fixed order, and only for the faults that are switched on.
func (n *Network) route(from, to string) plan {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.reachableLocked(from, to) {
		n.stats.Dropped++
		return plan{lost: true}
	}
	peer := n.nodes[to]
	if peer == nil {
		n.stats.Refused++
		return plan{}
	}
	if n.drop > 0 && n.rng.Float64() < n.drop {
		n.stats.Dropped++
		return plan{lost: true}
	}
	p := plan{peer: peer, delay: n.delayMin}
	if n.delayMax > n.delayMin {
		p.delay += time.Duration(n.rng.Int64N(int64(n.delayMax-n.delayMin) + 1))
	}
	if n.dup > 0 && n.rng.Float64() < n.dup {
		p.duplicate = true
	}
	return p
}

// replyLost reports whether a reply from → to is lost now, and counts it.
func (n *Network) replyLost(from, to string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.reachableLocked(from, to) {
		return false
	}
	n.stats.RepliesDropped++
	return true
}

func (n *Network) reachableLocked(from, to string) bool {
	if from == to {
		return true
	}
	return !n.isolated[from] && !n.isolated[to] &&
		n.group[from] == n.group[to] && !n.blocked[link{from, to}]
}

func (n *Network) count(f func(s *Stats)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f(&n.stats)
}

// remove forgets t's address if t still holds it.
func (n *Network) remove(t *Transport) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nodes[t.addr] == t {
		delete(n.nodes, t.addr)
	}
}
