// fill.go: the fill workload: fresh keys in scrambled order until -keys are
// written, with the write rate reported for every tenth of the fill, so
// that a slowdown as the node's data grows shows.
package benchcmd

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamo-kv/dynamo"
)

// fillSlices is how many rows a fill reports: one per tenth of -keys.
const fillSlices = 10

// fill writes -keys fresh keys with the zero Context from -clients clients,
// each Put as soon as the last returns, and prints one row per tenth of the
// keys: that slice's rate, latencies and CPU per write, and how many keys
// were written by its end. The clients pause between slices only for the
// last writes of one to return. The keys ("fill-" and a scrambled sequence
// number) are new to every run and spread over the whole key space, as
// random keys of a real application would.
func (b *bench) fill(ctx context.Context, i int, out *reporter) error {
	clients, err := b.newClients(i)
	if err != nil {
		return err
	}
	if b.cfg.cpuProfile != "" { // the whole fill
		prof, err := os.Create(profilePath(b.cfg.cpuProfile, "fill", len(b.cfg.workloads)))
		if err != nil {
			return err
		}
		defer prof.Close()
		if err := pprof.StartCPUProfile(prof); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var next atomic.Int64
	written := 0
	for slice := 1; slice <= fillSlices; slice++ {
		end := b.cfg.keys * slice / fillSlices
		if end == written {
			continue
		}
		s0 := b.startWindow()
		var wg sync.WaitGroup
		for _, c := range clients {
			c.hist, c.errs, c.firstErr = histogram{}, 0, nil
			wg.Go(func() { c.fillUntil(ctx, &next, int64(end)) })
		}
		wg.Wait()
		if err := ctx.Err(); err != nil {
			return err
		}
		res := b.summarize("fill", clients, s0, b.endWindow())
		res.Filled = end
		res.DiskBytes = diskBytes(b.dir)
		if err := out.print(res); err != nil {
			return err
		}
		written = end
	}
	return nil
}

// fillUntil writes the keys numbered by next until the number reaches end.
func (c *client) fillUntil(ctx context.Context, next *atomic.Int64, end int64) {
	for ctx.Err() == nil {
		k := next.Load()
		if k >= end {
			return
		}
		if !next.CompareAndSwap(k, k+1) {
			continue
		}
		start := time.Now()
		err := c.st.Put(ctx, fillKey(c.b.cfg.seed, k), c.value(), dynamo.Context{})
		if err != nil {
			c.errs++
			if c.firstErr == nil {
				c.firstErr = err
			}
			continue
		}
		c.hist.record(time.Since(start))
	}
}

// fillKey names the k-th key of a fill: "fill-" and k scrambled by an odd
// multiplier (a bijection, so keys never repeat) and the seed, in hex. A new
// slice, since the Store may read the key after Put returns.
func fillKey(seed uint64, k int64) []byte {
	x := uint64(k)*0x9e3779b97f4a7c15 ^ seed
	return strconv.AppendUint([]byte("fill-"), x, 16)
}

// diskBytes returns the bytes of the files under dir (the nodes' data),
// or 0 if it cannot be walked (memory storage keeps none).
func diskBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a file a compaction just removed
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return n
}
