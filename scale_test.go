// scale_test.go: a 100-node cluster in one process (§6, the paper's
// deployments were about 100 nodes): a workload while 10 nodes join and 10
// leave, checked for lost writes, balance, keys moved against the ideal, and
// measured for traffic and memory per node.
package dynamo

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/membership"
	"github.com/dynamo-kv/dynamo/storage/memory"
	"github.com/dynamo-kv/dynamo/transport"
	"github.com/dynamo-kv/dynamo/transport/memnet"
)

var scaleFull = flag.Bool("scale.full", false, "TestScale_100Nodes: the full run (Q = 2^17, 200k keys preloaded; minutes)")

// scaleParams sizes a scale run.
type scaleParams struct {
	nodes, joins, leaves int // joins and leaves alternate: equal counts
	partitions           int
	preload              int     // keys written before the churn
	writers              int     // clients writing during the churn
	opsPerStep           int     // writes per writer between two churn steps
	maxLoad              float64 // bound on the busiest node's partitions over the mean
	maxKeyLoad           float64 // bound on its stored replicas over the mean; 0: not checked (too few keys)
}

// The short run, in every go test: 100 nodes, but 4 joins and 4 leaves, few
// partitions (Q = 1024, about 31 replicated partitions per node, so
// placement alone puts the busiest node near 1.4 times the mean) and a
// thousand keys. The full run has the churn, partitions and keys of the
// claim: 10 joins, 10 leaves, Q = 2^17, 200k keys.
var (
	scaleShort = scaleParams{nodes: 100, joins: 4, leaves: 4, partitions: 1 << 10, preload: 1000, writers: 4, opsPerStep: 10, maxLoad: 1.6}
	scaleBig   = scaleParams{nodes: 100, joins: 10, leaves: 10, partitions: 1 << 17, preload: 200_000, writers: 8, opsPerStep: 250, maxLoad: 1.10, maxKeyLoad: 1.10}
)

// thinkTime is the fake time a client waits between two writes during the
// churn.
const thinkTime = time.Millisecond

// scaleNode is one node of a scale run.
type scaleNode struct {
	id    string
	mem   *memory.Store
	tr    *countingTransport
	store *Store
}

// scaleCluster is the nodes on one in-memory network with a static member
// list, all in one synctest bubble.
type scaleCluster struct {
	t       *testing.T
	p       scaleParams
	net     *memnet.Network
	members *membership.Static
	nodes   map[string]*scaleNode
	entry   atomic.Pointer[[]*scaleNode] // the nodes clients may call
	seed    uint64
}

// countingTransport counts what a node sends and receives over its calls.
type countingTransport struct {
	transport.Transport
	calls, sent, received atomic.Int64
}

func (c *countingTransport) Call(ctx context.Context, addr string, req []byte) ([]byte, error) {
	reply, err := c.Transport.Call(ctx, addr, req)
	c.calls.Add(1)
	c.sent.Add(int64(len(req)))
	c.received.Add(int64(len(reply)))
	return reply, err
}

// start runs a Store for a node called id; it joins the ring when the
// caller adds it to the member list.
func (c *scaleCluster) start(id string) *scaleNode {
	tr, err := c.net.Listen(id)
	require.NoError(c.t, err)
	n := &scaleNode{id: id, mem: memory.New(), tr: &countingTransport{Transport: tr}}
	cfg := DefaultConfig()
	cfg.NodeID = id
	cfg.Partitions = c.p.partitions
	cfg.Transport = n.tr
	cfg.Storage = n.mem
	cfg.Membership = c.members
	cfg.AntiEntropy.Interval = -1 // rounds run by hand, once the churn is over, to be measured
	var seed [32]byte
	c.seed++
	binary.LittleEndian.PutUint64(seed[:], c.seed)
	cfg.Rand = rand.NewChaCha8(seed)
	n.store, err = New(cfg)
	require.NoError(c.t, err)
	c.nodes[id] = n
	return n
}

func (c *scaleCluster) stop(n *scaleNode) {
	require.NoError(c.t, n.store.Close())
	require.NoError(c.t, n.tr.Close())
	delete(c.nodes, n.id)
}

func (c *scaleCluster) live() []*scaleNode {
	out := make([]*scaleNode, 0, len(c.nodes))
	for _, n := range c.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *scaleNode) int { return cmpString(a.id, b.id) })
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// settle waits until every node's ring has the member list's members, then
// runs transfer rounds everywhere until nothing is left to pull and no node
// holds a partition it does not own.
func (c *scaleCluster) settle() {
	c.t.Helper()
	want := c.members.Members()
	for _, n := range c.live() {
		for spins := 0; !slices.Equal(n.store.ring.Load().members, want); spins++ {
			if spins == 10_000_000 {
				c.t.Fatalf("%s never saw the new member list", n.id)
			}
			runtime.Gosched()
		}
	}
	ctx := context.Background()
	for round := 0; ; round++ {
		require.Less(c.t, round, 20, "transfers do not finish")
		busy := false
		for _, n := range c.live() {
			_ = n.store.TransferRound(ctx) // an error leaves work behind, which the loop sees
			busy = busy || n.store.PendingTransfers() > 0 || c.foreign(n) > 0
		}
		if !busy {
			return
		}
	}
}

// foreign counts the partitions n holds data of without being a primary.
func (c *scaleCluster) foreign(n *scaleNode) int {
	r := n.store.ring.Load()
	me := r.index[n.id]
	k := 0
	for p := range r.partitions {
		if n.store.rep.tree.get(p) != 0 && !r.isPrimary(p, me, n.store.cfg.N) {
			k++
		}
	}
	return k
}

// replicas counts the keys n stores.
func replicas(n *scaleNode) int {
	k := 0
	_ = n.mem.ForEach([]byte{spaceData}, func([]byte, []byte) error { k++; return nil })
	return k
}

// moved sums what transfers moved over the live nodes: keys pulled plus
// keys pushed.
func (c *scaleCluster) moved() (keys, bytes int64) {
	for _, n := range c.nodes {
		w := n.store.Stats().Transfer
		keys += int64(w.KeysReceived + w.KeysSent)
		bytes += w.BytesReceived + w.BytesSent
	}
	return keys, bytes
}

// writer is one client: it writes fresh keys, and every fifth operation
// overwrites one of its own keys with a read-modify-write.
type writer struct {
	id    int
	rng   *rand.Rand
	acked map[string]string // key -> the value of its last acknowledged write
	keys  []string
	seq   int
	fails int
}

func (w *writer) step(c *scaleCluster) {
	entry := *c.entry.Load()
	s := entry[w.rng.IntN(len(entry))].store
	ctx := context.Background()
	w.seq++
	var key string
	var cx Context
	if len(w.keys) > 0 && w.seq%5 == 0 {
		key = w.keys[w.rng.IntN(len(w.keys))]
		_, got, err := s.Get(ctx, []byte(key))
		if err != nil {
			w.fails++
			return
		}
		cx = got
	} else {
		key = fmt.Sprintf("w%d-%07d", w.id, w.seq)
	}
	value := fmt.Sprintf("%s@%d", key, w.seq)
	if err := s.Put(ctx, []byte(key), []byte(value), cx); err != nil {
		w.fails++
		return
	}
	if _, ok := w.acked[key]; !ok {
		w.keys = append(w.keys, key)
	}
	w.acked[key] = value
}

// TestScale_100Nodes runs 100 nodes on the in-memory network in fake time:
// it preloads keys, then writes while 10 nodes join and 10 leave (each leave
// a Decommission, then removal from the member list, then Close), one at a
// time, alternating. It checks that every acknowledged write is read back at
// R = N, that every key ends up on exactly its N primaries, that each join
// moves replicas only to the newcomer and each leave only the leaver's, and
// (full run) that the busiest node holds at most 1.10 times the mean. It
// logs the keys moved against the ideal 1/(n+1) per join, transfer,
// anti-entropy and other traffic per node, and heap per node.
//
//	go test -run TestScale_100Nodes -v .                  # short: Q = 1024, 2,000 keys
//	go test -run TestScale_100Nodes -v . -scale.full -timeout 60m
func TestScale_100Nodes(t *testing.T) {
	p := scaleShort
	if *scaleFull {
		p = scaleBig
	}
	synctest.Test(t, func(t *testing.T) { runScale(t, p) })
}

func runScale(t *testing.T, p scaleParams) {
	ctx := context.Background()
	heap0 := heapInUse()
	c := &scaleCluster{t: t, p: p, net: memnet.New(memnet.Options{Seed: 1}), members: membership.NewStatic(), nodes: map[string]*scaleNode{}}
	var ms []Member
	for i := range p.nodes {
		ms = append(ms, Member{ID: fmt.Sprintf("s%03d", i), Addr: fmt.Sprintf("s%03d", i)})
	}
	c.members = membership.NewStatic(ms...)
	var original []*scaleNode
	for _, m := range ms {
		original = append(original, c.start(m.ID))
	}
	defer func() {
		for _, n := range c.live() {
			c.stop(n)
		}
	}()
	c.settle()
	heapIdle := heapInUse()
	t.Logf("%d nodes, Q=%d: heap %.1f MiB per idle node", p.nodes, p.partitions, float64(heapIdle-heap0)/float64(p.nodes)/(1<<20))

	// Clients use the nodes that never leave, and the newcomers once they
	// have joined.
	stable := slices.Clone(original[p.leaves:])
	c.entry.Store(&stable)
	writers := make([]*writer, p.writers)
	for i := range writers {
		writers[i] = &writer{id: i, rng: rand.New(rand.NewPCG(uint64(i), 7)), acked: map[string]string{}}
	}
	// Preload, without churn.
	var wg sync.WaitGroup
	for _, w := range writers {
		wg.Go(func() {
			for range p.preload / p.writers {
				w.step(c)
			}
		})
	}
	wg.Wait()
	t.Logf("preloaded %d keys", p.preload)

	// The churn: joins and leaves alternate; writers write opsPerStep each
	// between steps, and keep writing while each step runs.
	var steps []scaleStep
	for i := range p.joins + p.leaves {
		var done atomic.Bool
		var during sync.WaitGroup
		for _, w := range writers {
			during.Go(func() {
				for k := 0; k < p.opsPerStep || !done.Load(); k++ {
					w.step(c)
					// A client's think time: it lets the bubble's clock
					// move, so that the paced transfers make progress.
					time.Sleep(thinkTime)
				}
			})
		}
		st := scaleStep{n: len(c.nodes)}
		for _, n := range c.nodes {
			st.total += replicas(n)
		}
		k0, b0 := c.moved()
		if i%2 == 0 {
			id := fmt.Sprintf("j%02d", i/2)
			n := c.start(id)
			st.what = "join " + id
			c.members.Add(Member{ID: id, Addr: id})
			c.settle()
			st.after = replicas(n)
			entry := append(slices.Clone(*c.entry.Load()), n)
			c.entry.Store(&entry)
			k1, b1 := c.moved()
			st.moved, st.bytes = k1-k0, b1-b0
		} else {
			n := original[i/2]
			st.what = "leave " + n.id
			st.after = replicas(n)
			require.NoError(t, n.store.Decommission(ctx))
			c.members.Remove(n.id)
			c.settle()
			k1, b1 := c.moved() // the leaver's pushes included: it is still running
			st.moved, st.bytes = k1-k0, b1-b0
			c.stop(n)
		}
		done.Store(true)
		during.Wait()
		steps = append(steps, st)
		t.Logf("%s done", st.what)
	}
	c.checkScale(writers, steps, heap0)
}

// scaleStep is what one join or leave did.
type scaleStep struct {
	what  string
	n     int   // nodes before the step
	total int   // replicas stored before the step
	moved int64 // replicas moved by transfers during the step
	bytes int64 // their bytes, both ways
	after int   // replicas the newcomer holds after a join; the leaver held before a leave
}

// ideal is the replicas a step should move: a newcomer's fair share of
// them, total/(n+1), or a leaver's, total/n.
func (st scaleStep) ideal() float64 {
	if st.what[0] == 'j' {
		return float64(st.total) / float64(st.n+1)
	}
	return float64(st.total) / float64(st.n)
}

// checkScale runs anti-entropy everywhere once, then checks and logs the
// outcome of a scale run.
func (c *scaleCluster) checkScale(writers []*writer, steps []scaleStep, heap0 uint64) {
	t, p := c.t, c.p
	ctx := context.Background()
	nodes := c.live()
	// One anti-entropy round on every node, with every peer: what a round
	// costs on a converged cluster, and the repair of replicas that a write
	// acknowledged at W < N did not reach.
	var ae []SyncResult
	for _, n := range nodes {
		res, err := n.store.AntiEntropy(ctx)
		require.NoError(t, err, "anti-entropy on %s", n.id)
		ae = append(ae, res)
	}

	// No acknowledged write is lost: each reads back at R = N, and every
	// key is on exactly its N primaries, all with the same state.
	keys, acked, fails := 0, 0, 0
	r := nodes[0].store.ring.Load()
	for _, w := range writers {
		fails += w.fails
		for key, value := range w.acked {
			keys++
			acked++
			reader := nodes[keys%len(nodes)].store
			sibs, _, err := reader.Get(ctx, []byte(key), WithR(reader.cfg.N))
			require.NoError(t, err, key)
			require.Contains(t, values(sibs), value, "key %s lost its last acknowledged write", key)
			var first state
			for j, m := range r.preference(r.partition([]byte(key)), reader.cfg.N) {
				rs := c.nodes[m.ID].store
				st, err := rs.rep.read(rs.place([]byte(key)).p, []byte(key))
				require.NoError(t, err)
				if j == 0 {
					first = st
				} else {
					require.True(t, sameVersion(first, st), "key %s: primaries %s and %s differ", key, r.preference(r.partition([]byte(key)), 1)[0].ID, m.ID)
				}
			}
		}
	}
	stored := make([]float64, len(nodes))
	var sum float64
	for i, n := range nodes {
		stored[i] = float64(replicas(n))
		sum += stored[i]
		require.Zero(t, c.foreign(n), "%s holds partitions it does not own", n.id)
	}
	require.Equal(t, float64(keys*nodes[0].store.cfg.N), sum, "every key on exactly N nodes")
	keyLoad := slices.Max(stored) / (sum / float64(len(nodes)))

	// Placement load: the partitions each node is a primary of.
	parts := make([]float64, len(nodes))
	for pt := range r.partitions {
		for _, m := range r.preference(pt, nodes[0].store.cfg.N) {
			parts[r.index[m.ID]]++
		}
	}
	partLoad := slices.Max(parts) / (float64(r.partitions*nodes[0].store.cfg.N) / float64(len(nodes)))
	require.LessOrEqual(t, partLoad, p.maxLoad, "busiest node's partitions over the mean")
	if p.maxKeyLoad > 0 {
		require.LessOrEqual(t, keyLoad, p.maxKeyLoad, "busiest node's replicas over the mean")
	}

	// Keys moved against the ideal.
	var joinMoved, joinIdeal, leaveMoved, leaveHeld, leaveIdeal float64
	for _, st := range steps {
		t.Logf("%-10s n=%3d replicas=%7d moved=%6d (%.2f of ideal %.0f) newcomer holds / leaver held %d, %.1f KiB",
			st.what, st.n, st.total, st.moved, float64(st.moved)/st.ideal(), st.ideal(), st.after, float64(st.bytes)/1024)
		if st.what[0] == 'j' {
			joinMoved += float64(st.moved)
			joinIdeal += st.ideal()
		} else {
			leaveMoved += float64(st.moved)
			leaveHeld += float64(st.after)
			leaveIdeal += st.ideal()
		}
	}

	// Traffic and memory per node.
	var aeBytes, aeTrips []float64
	for _, res := range ae {
		aeBytes = append(aeBytes, float64(res.BytesSent+res.BytesReceived))
		aeTrips = append(aeTrips, float64(res.RoundTrips))
	}
	var xfer, callBytes []float64
	for _, n := range nodes {
		w := n.store.Stats().Transfer
		xfer = append(xfer, float64(w.BytesSent+w.BytesReceived))
		callBytes = append(callBytes, float64(n.tr.sent.Load()+n.tr.received.Load()))
	}
	heap := heapInUse()
	t.Logf("nodes=%d Q=%d keys=%d acked=%d unacked=%d lost=0", len(nodes), r.partitions, keys, acked, fails)
	t.Logf("load max/mean: partitions %.3f, stored replicas %.3f", partLoad, keyLoad)
	t.Logf("moved/ideal: joins %.3f, leaves %.3f (leavers' replicas moved: %.3f of what they held)", joinMoved/joinIdeal, leaveMoved/leaveIdeal, leaveMoved/leaveHeld)
	t.Logf("anti-entropy round per node: mean %.1f KiB, max %.1f KiB, %.0f round trips (%d peers compared on average)",
		mean(aeBytes)/1024, slices.Max(aeBytes)/1024, mean(aeTrips), sumPeers(ae)/len(ae))
	t.Logf("transfers per node (whole run): mean %.1f KiB, max %.1f KiB; all calls per node (requests and replies): mean %.1f KiB",
		mean(xfer)/1024, slices.Max(xfer)/1024, mean(callBytes)/1024)
	t.Logf("heap per node: %.2f MiB (%d nodes holding %d replicas)", float64(heap-heap0)/float64(len(nodes))/(1<<20), len(nodes), int(sum))

	lo, hi := 0.8, 1.2
	if p.partitions < 1<<14 {
		lo, hi = 0.6, 1.4 // few partitions: a newcomer's share varies more
	}
	require.InDelta(t, 1, leaveMoved/leaveHeld, 0.1, "a leave moves the leaver's replicas, nothing else")
	require.True(t, joinMoved/joinIdeal >= lo && joinMoved/joinIdeal <= hi, "joins moved %.2f of the ideal", joinMoved/joinIdeal)
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func sumPeers(rs []SyncResult) int {
	n := 0
	for _, r := range rs {
		n += r.Peers
	}
	return n
}

// heapInUse returns the bytes of live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
