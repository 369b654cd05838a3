// restart.go: -restart: after the workloads, each node is closed and
// started again on its data, timing the storage's Open and the Store's
// start-up (the hash tree read from the storage or rebuilt by a scan), and
// with -verify, VerifyHashes.
package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/storage/bolt"
	"github.com/dynamo-kv/dynamo/transport/tcp"
)

// restart closes node i (Store, transport, storage: a clean shutdown, which
// checkpoints the log) and starts it again on its data with a new
// transport, printing how long each step took. Only a cluster of one node
// restarts: the others' member lists hold the old address.
func (cl *cluster) restart(ctx context.Context, c config, dir string, i int, w io.Writer) error {
	id := fmt.Sprintf("node-%d", i)
	closeStart := time.Now()
	errs := []error{cl.stores[i].Close(), cl.transports[i].Close(), cl.storages[i].Close()}
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("restart %s: close: %w", id, err)
		}
	}
	closed := time.Since(closeStart)
	t, err := tcp.Listen("127.0.0.1:0", tcp.Options{})
	if err != nil {
		return err
	}
	cl.transports[i] = t
	start := time.Now()
	st, err := openStorage(c, filepath.Join(dir, id))
	if err != nil {
		return err
	}
	cl.storages[i] = st
	opened := time.Since(start)
	cfg := dynamo.DefaultConfig()
	cfg.NodeID = id
	cfg.N, cfg.R, cfg.W = c.n, c.r, c.w
	cfg.AntiEntropy.Interval = c.aeInterval
	cfg.Transport, cfg.Storage = t, st
	cfg.Members = []dynamo.Member{{ID: id, Addr: t.Addr()}}
	start = time.Now()
	s, err := dynamo.New(cfg)
	if err != nil {
		return fmt.Errorf("restart %s: %w", id, err)
	}
	cl.stores[i] = s
	started := time.Since(start)
	scans := uint64(0)
	if b, ok := st.(*bolt.Store); ok {
		scans = b.Stats().SumScans
	}
	fmt.Fprintf(w, "restart %s: close %.3fs, storage open %.3fs, store start %.3fs (hash tree scans: %d), total %.3fs\n",
		id, closed.Seconds(), opened.Seconds(), started.Seconds(), scans, (opened + started).Seconds())
	if !c.verify {
		return nil
	}
	start = time.Now()
	err = s.VerifyHashes(ctx)
	fmt.Fprintf(w, "verify %s: %.3fs, %v\n", id, time.Since(start).Seconds(), errOK(err))
	return err
}

func errOK(err error) string {
	if err != nil {
		return err.Error()
	}
	return "hashes equal the data"
}
