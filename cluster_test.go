// cluster_test.go: the in-process cluster harness on the in-memory network,
// and the goroutine-leak check for the package.
package dynamo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dynamo-kv/dynamo/membership"
	"github.com/dynamo-kv/dynamo/storage/bolt"
	"github.com/dynamo-kv/dynamo/storage/memory"
	"github.com/dynamo-kv/dynamo/transport/memnet"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(durabilityChildEnv); dir != "" {
		durabilityChild(dir)
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// testCluster is n Stores on one in-memory network with memory storage.
type testCluster struct {
	t        testing.TB
	net      *memnet.Network
	members  *membership.Static
	stores   []*Store
	storages []*memory.Store
	trans    []*memnet.Transport
	cfg      func(*Config)
}

func nodeID(i int) string { return fmt.Sprintf("n%d", i) }

// newTestCluster starts n nodes. mut adjusts each node's Config.
func newTestCluster(t testing.TB, n int, mut func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, net: memnet.New(memnet.Options{Seed: 1}), cfg: mut}
	var ms []Member
	for i := range n {
		ms = append(ms, Member{ID: nodeID(i), Addr: nodeID(i)})
	}
	c.members = membership.NewStatic(ms...)
	c.stores = make([]*Store, n)
	c.storages = make([]*memory.Store, n)
	c.trans = make([]*memnet.Transport, n)
	for i := range n {
		c.start(i, memory.New())
	}
	t.Cleanup(c.close)
	c.settle()
	return c
}

// onBolt restarts every node on a bbolt file in dir (fsync on), keeping the
// network and membership: for benchmarks that must pay for durability.
func (c *testCluster) onBolt(tb testing.TB, dir string) {
	tb.Helper()
	for i := range c.stores {
		c.stop(i)
		db, err := bolt.Open(filepath.Join(dir, nodeID(i)+".db"), nil)
		require.NoError(tb, err)
		tb.Cleanup(func() { db.Close() })
		tr, err := c.net.Listen(nodeID(i))
		require.NoError(tb, err)
		c.trans[i] = tr
		c.stores[i], err = New(c.config(i, db))
		require.NoError(tb, err)
	}
}

// settle runs every node's start-up transfers (the pulls a node plans when it
// joins) now, so tests begin with a quiet cluster.
func (c *testCluster) settle() {
	c.t.Helper()
	for _, s := range c.stores {
		if s != nil {
			require.NoError(c.t, s.TransferRound(context.Background()))
			require.Zero(c.t, s.PendingTransfers())
		}
	}
	// Each Store's background loop ran its first round before the manual
	// one (which waits for it) or runs it after, finding nothing to do.
}

func (c *testCluster) config(i int, st Storage) Config {
	cfg := DefaultConfig()
	cfg.NodeID = nodeID(i)
	cfg.Partitions = 64
	cfg.Transport = c.trans[i]
	cfg.Storage = st
	cfg.Membership = c.members
	cfg.ReplicaTimeout = 200 * time.Millisecond
	cfg.RequestTimeout = time.Second
	if c.cfg != nil {
		c.cfg(&cfg)
	}
	return cfg
}

// start (re)starts node i on st.
func (c *testCluster) start(i int, st *memory.Store) {
	c.t.Helper()
	tr, err := c.net.Listen(nodeID(i))
	require.NoError(c.t, err)
	c.trans[i] = tr
	c.storages[i] = st
	s, err := New(c.config(i, st))
	require.NoError(c.t, err)
	c.stores[i] = s
}

// stop closes node i's Store and transport, keeping its storage.
func (c *testCluster) stop(i int) {
	if c.stores[i] != nil {
		c.stores[i].Close()
		c.stores[i] = nil
	}
	if c.trans[i] != nil {
		c.trans[i].Close()
		c.trans[i] = nil
	}
}

func (c *testCluster) close() {
	for i := range c.stores {
		c.stop(i)
	}
}

// local returns node i's own replica of key: live values, sorted.
func (c *testCluster) local(i int, key string) []string {
	st, err := c.stores[i].localState([]byte(key))
	require.NoError(c.t, err)
	return liveValues(st)
}

// values returns the siblings' values, sorted.
func values(sibs []Sibling) []string {
	out := []string{}
	for _, sb := range sibs {
		out = append(out, string(sb.Value))
	}
	slices.Sort(out)
	return out
}

// liveValues returns the live siblings' values of a replica state, sorted.
func liveValues(st state) []string {
	out := []string{}
	for _, sb := range st.live() {
		out = append(out, string(sb.Value))
	}
	slices.Sort(out)
	return out
}

func get(t testing.TB, s *Store, key string, opts ...Option) ([]string, Context) {
	t.Helper()
	sibs, c, err := s.Get(context.Background(), []byte(key), opts...)
	require.NoError(t, err)
	return values(sibs), c
}

func put(t testing.TB, s *Store, key, value string, c Context, opts ...Option) {
	t.Helper()
	require.NoError(t, s.Put(context.Background(), []byte(key), []byte(value), c, opts...))
}

// eventually waits, with a deadline, until cond holds.
func eventually(t testing.TB, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, 5*time.Second, 5*time.Millisecond, msg)
}
