// bignode_test.go: §4.7 a big node's start-up: the hash tree of millions of
// keys read from bbolt against the tree rebuilt by a scan, timed, and equal.
package dynamo

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage/bolt"
)

var bigNodeKeys = flag.Int("bignode.keys", 20000, "TestBigNode_Restart: keys to load (10000000 takes minutes and about 3 GB of disk)")

// scanOnly hides a Storage's optional interfaces but the ones a replica's
// scan uses, so that the replica rebuilds its hash tree as a Storage
// without storage.Summer makes it.
type scanOnly struct{ Storage }

// TestBigNode_Restart loads -bignode.keys keys of 128-byte values into one
// node's bbolt file (in storage-key order, in large batches, so that the
// load is quick: the test is about the start-up), closes it, and starts a
// replica on it twice: once reading the hash tree bbolt keeps, once
// rebuilding it by scanning every key (what every start did before). It
// logs both times and requires the two trees to be equal.
func TestBigNode_Restart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: loads a bbolt file and starts a replica on it twice")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "big.db")
	cfg := DefaultConfig()
	cfg.NodeID = "n0"
	cfg = cfg.withDefaults()
	open := func(hide bool) (*replica, *bolt.Store, time.Duration, time.Duration) {
		start := time.Now()
		db, err := bolt.Open(path, &bolt.Options{LogSize: 256 << 20})
		require.NoError(t, err)
		opened := time.Since(start)
		c := cfg
		c.Storage = db
		if hide {
			c.Storage = scanOnly{db}
		}
		r := newReplica(c, c.Logger, "n0/01", newRunEpochs(7))
		start = time.Now()
		_, err = r.load()
		require.NoError(t, err)
		return r, db, opened, time.Since(start)
	}

	r, db, _, _ := open(false)
	n := *bigNodeKeys
	type item struct {
		sk  []byte
		key []byte
		p   int
	}
	items := make([]item, n)
	for i := range n {
		key := strconv.AppendUint([]byte("fill-"), uint64(i)*0x9e3779b97f4a7c15, 16)
		p := partitionOf(key, r.q)
		items[i] = item{sk: dataKey(p, key), key: key, p: p}
	}
	slices.SortFunc(items, func(a, b item) int { return bytes.Compare(a.sk, b.sk) })
	value := bytes.Repeat([]byte("v"), 128)
	st := state{VV: versionVector{{Actor: "n0/01", Counter: 1}}, Siblings: []sibling{{Dot: dot{Actor: "n0/01", Counter: 1}, Value: value}}}
	loadStart := time.Now()
	const batch = 5000
	for i := 0; i < n; i += batch {
		part := items[i:min(n, i+batch)]
		parts, keys, states := make([]int, len(part)), make([][]byte, len(part)), make([]state, len(part))
		for j, it := range part {
			parts[j], keys[j], states[j] = it.p, it.key, st
		}
		require.NoError(t, r.mergeBatch(parts, keys, states))
	}
	items = nil
	require.NoError(t, db.Close())
	info, err := os.Stat(path)
	require.NoError(t, err)
	t.Logf("loaded %d keys in %s; the bbolt file holds %.2f GB", n, time.Since(loadStart).Round(time.Millisecond), float64(info.Size())/1e9)

	kept, db, opened, started := open(false)
	require.Zero(t, db.Stats().SumScans, "the tree is read, not rebuilt")
	require.NoError(t, db.Close())
	t.Logf("start-up reading the kept hash tree: storage open %s, replica load %s", opened.Round(time.Microsecond), started.Round(time.Microsecond))

	scanned, db, opened, started := open(true)
	t.Logf("start-up scanning every key (as before): storage open %s, replica load %s", opened.Round(time.Microsecond), started.Round(time.Microsecond))
	for p := range r.q {
		require.Equal(t, scanned.tree.get(p), kept.tree.get(p), "partition %d", p)
		require.Equal(t, r.tree.get(p), kept.tree.get(p), "partition %d", p)
	}
	require.NoError(t, db.Close())
}
