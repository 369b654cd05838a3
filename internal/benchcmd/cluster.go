// cluster.go: the in-process cluster: one Store per node, each with its own
// storage and a TCP transport on 127.0.0.1, joined by a static member list.
package benchcmd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/storage"
	"github.com/dynamo-kv/dynamo/storage/bolt"
	"github.com/dynamo-kv/dynamo/storage/memory"
	"github.com/dynamo-kv/dynamo/transport/tcp"
)

// cluster is the nodes of one benchmark run. Close releases everything that
// startCluster opened, in reverse order.
type cluster struct {
	stores     []*dynamo.Store
	transports []*tcp.Transport
	storages   []dynamo.Storage
}

// startCluster starts c.nodes nodes with their data under dir. The TCP
// transports are created first, so that every node's Config.Members holds
// every address before any Store starts.
func startCluster(c config, dir string) (_ *cluster, err error) {
	cl := &cluster{}
	defer func() {
		if err != nil {
			err = errors.Join(err, cl.Close())
		}
	}()
	members := make([]dynamo.Member, c.nodes)
	for i := range c.nodes {
		t, err := tcp.Listen("127.0.0.1:0", tcp.Options{})
		if err != nil {
			return nil, err
		}
		cl.transports = append(cl.transports, t)
		members[i] = dynamo.Member{ID: fmt.Sprintf("node-%d", i), Addr: t.Addr()}
	}
	for i := range c.nodes {
		st, err := openStorage(c, filepath.Join(dir, members[i].ID))
		if err != nil {
			return nil, err
		}
		cl.storages = append(cl.storages, st)
	}
	for i := range c.nodes {
		cfg := dynamo.DefaultConfig()
		cfg.NodeID = members[i].ID
		cfg.N, cfg.R, cfg.W = c.n, c.r, c.w
		cfg.AntiEntropy.Interval = c.aeInterval
		cfg.Transport = cl.transports[i]
		cfg.Storage = cl.storages[i]
		cfg.Members = members
		s, err := dynamo.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", members[i].ID, err)
		}
		cl.stores = append(cl.stores, s)
	}
	return cl, nil
}

// openStorage opens a node's storage; bbolt keeps its file in dir.
func openStorage(c config, dir string) (dynamo.Storage, error) {
	if c.storage == "memory" {
		return memory.New(), nil
	}
	if k, ok := c.extra[c.storage]; ok {
		st, err := k.Open(dir)
		if err != nil {
			return nil, fmt.Errorf("open %s storage in %s: %w", c.storage, dir, err)
		}
		return st, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	st, err := bolt.Open(filepath.Join(dir, "dynamo.db"), &bolt.Options{LogSize: c.logSize}) // fsync on every commit
	if err != nil {
		return nil, fmt.Errorf("open storage in %s: %w", dir, err)
	}
	return st, nil
}

// diskStats sums the storages' counters (zero with memory storage).
func (cl *cluster) diskStats() storage.Stats {
	var sum storage.Stats
	for _, st := range cl.storages {
		if r, ok := st.(storage.StatsReporter); ok {
			s := r.StorageStats()
			sum.Commits += s.Commits
			sum.Updates += s.Updates
			sum.Checkpoints += s.Checkpoints
		}
	}
	return sum
}

// storeStats sums the nodes' read repairs and coalesced Gets.
func (cl *cluster) storeStats() (readRepairs, coalesced int64) {
	for _, s := range cl.stores {
		st := s.Stats()
		readRepairs += st.ReadRepairs
		coalesced += st.CoalescedGets
	}
	return readRepairs, coalesced
}

// Close stops every Store before closing any transport, so no Store's
// background work (read repair, the last replica of a write) runs against a
// closed transport, and closes the storages last.
func (cl *cluster) Close() error {
	var errs []error
	for _, s := range cl.stores {
		errs = append(errs, s.Close())
	}
	for _, t := range cl.transports {
		errs = append(errs, t.Close())
	}
	for _, st := range cl.storages {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}
