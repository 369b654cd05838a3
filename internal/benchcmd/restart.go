// restart.go: -restart: after the workloads, each node is closed and
// started again on its data, timing the storage's Open and the Store's
// start-up (the hash tree read from the storage or rebuilt by a scan), and
// with -verify, VerifyHashes.
package benchcmd

import (
	"context"
	"encoding/json"
	"errors"
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
	res := restartResult{Workload: "restart", Node: id, CloseSec: closed.Seconds(), OpenSec: opened.Seconds(), StartSec: started.Seconds()}
	if b, ok := st.(*bolt.Store); ok {
		res.HashScans = b.Stats().SumScans
	} else if k, ok := c.extra[c.storage]; ok && k.SumScans != nil {
		res.HashScans = k.SumScans(st)
	}
	var verr error
	if c.verify {
		start = time.Now()
		verr = s.VerifyHashes(ctx)
		res.VerifySec, res.Verified = time.Since(start).Seconds(), verr == nil
	}
	if c.json {
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return errors.Join(err, verr)
	}
	_, err = fmt.Fprintf(w, "restart %s: close %.3fs, storage open %.3fs, store start %.3fs (hash tree scans in the storage: %d), open+start %.3fs\n",
		id, res.CloseSec, res.OpenSec, res.StartSec, res.HashScans, res.OpenSec+res.StartSec)
	if c.verify {
		outcome := "the hashes equal the data"
		if verr != nil {
			outcome = verr.Error()
		}
		_, err = fmt.Fprintf(w, "verify %s: %.3fs, %s\n", id, res.VerifySec, outcome)
	}
	return errors.Join(err, verr)
}

// restartResult is what -restart reports of one node, in seconds.
type restartResult struct {
	Workload  string  `json:"workload"` // "restart"
	Node      string  `json:"node"`
	CloseSec  float64 `json:"close_s"`    // Store, transport and storage Close
	OpenSec   float64 `json:"open_s"`     // the storage's Open (bbolt: the log replayed)
	StartSec  float64 `json:"start_s"`    // dynamo.New on it: the hash tree read or rebuilt
	HashScans uint64  `json:"hash_scans"` // bbolt: times Sums scanned the data (0: read)
	VerifySec float64 `json:"verify_s"`   // -verify: VerifyHashes
	Verified  bool    `json:"verified"`   // -verify: the hashes equal the data
}
