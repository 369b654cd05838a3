// bench.go: the closed-loop clients, the preload, and one measured run per
// workload. The workloads are described in the command's doc (main.go).
package benchcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/storage"
)

// errMissing is counted when a Get of a preloaded key finds no value.
var errMissing = errors.New("preloaded key not found")

// bench is one benchmark run: the cluster, the preloaded keys and, per key,
// the Context of its latest Get.
type bench struct {
	cfg       config
	cl        *cluster
	dir       string // the nodes' data, one directory each
	stderr    io.Writer
	keys      [][]byte                         // "key-%08d"; never modified, since a Store may read a key after its call returns
	contexts  []atomic.Pointer[dynamo.Context] // by key index; set by the preload, replaced after every Get and chained write
	writing   []sync.Mutex                     // by key index: chain writes one key at a time
	preloaded bool
	stale     bool // a workload wrote preloaded keys with Put, which returns no context
}

// benchmark starts the cluster in a fresh directory under cfg.dir, runs
// every workload, prints each result as it completes, and removes the
// directory.
func benchmark(ctx context.Context, cfg config, stdout, stderr io.Writer) (err error) {
	dir, err := os.MkdirTemp(cfg.dir, "dynamo-bench-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()
	cl, err := startCluster(cfg, dir)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, cl.Close()) }()

	b := &bench{cfg: cfg, cl: cl, dir: dir, stderr: stderr, keys: make([][]byte, cfg.keys), contexts: make([]atomic.Pointer[dynamo.Context], cfg.keys), writing: make([]sync.Mutex, cfg.keys)}
	for i := range b.keys {
		b.keys[i] = fmt.Appendf(nil, "key-%08d", i)
	}
	out := newReporter(stdout, cfg)
	for i, w := range cfg.workloads {
		if w == "fill" {
			if err := b.fill(ctx, i, out); err != nil {
				return err
			}
			continue
		}
		if w != "put" && !b.preloaded {
			if err := b.preload(ctx); err != nil {
				return err
			}
		}
		if w == "chain" && b.stale {
			if _, err := b.readAll(ctx); err != nil {
				return err
			}
		}
		res, err := b.run(ctx, i, w)
		if err != nil {
			return err
		}
		b.stale = b.stale || w == "mixed" || w == "overwrite"
		if err := out.print(res); err != nil {
			return err
		}
	}
	if cfg.restart {
		return cl.restart(ctx, cfg, dir, 0, stdout)
	}
	return nil
}

// preload writes every key to all N replicas (so reads of it need no repair)
// and reads it back to learn its Context. It runs once, before the first
// workload that reads.
func (b *bench) preload(ctx context.Context) error {
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for wkr := range errs {
		wg.Go(func() {
			value := randomBytes(rand.New(rand.NewPCG(b.cfg.seed, uint64(1<<32+wkr))), b.cfg.valueSize)
			for {
				k := int(next.Add(1) - 1)
				if k >= len(b.keys) || ctx.Err() != nil {
					errs[wkr] = ctx.Err()
					return
				}
				st := b.cl.stores[k%len(b.cl.stores)]
				err := putRetry(ctx, st, b.keys[k], value, dynamo.WithW(b.cfg.n))
				var sibs []dynamo.Sibling
				var c dynamo.Context
				if err == nil {
					sibs, c, err = getRetry(ctx, st, b.keys[k])
				}
				if err == nil && len(sibs) == 0 {
					err = errMissing
				}
				if err != nil {
					errs[wkr] = fmt.Errorf("preload %s: %w", b.keys[k], err)
					return
				}
				b.contexts[k].Store(&c)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	b.preloaded = true
	fmt.Fprintf(b.stderr, "dynamo-bench: preloaded %d keys of %d B in %v\n", len(b.keys), b.cfg.valueSize, time.Since(start).Round(time.Millisecond))
	return nil
}

// putRetry writes value under a new key, retrying up to 4 times after a
// quorum failure. A failed Put may have been stored by some replicas, so each
// retry first reads the key and writes with that Context: the retry
// supersedes the partial write instead of becoming its sibling.
func putRetry(ctx context.Context, st *dynamo.Store, key, value []byte, opts ...dynamo.Option) error {
	var c dynamo.Context
	for attempt := 0; ; attempt++ {
		err := st.Put(ctx, key, value, c, opts...)
		if err == nil || attempt == 4 || ctx.Err() != nil ||
			!(errors.Is(err, dynamo.ErrWriteQuorum) || errors.Is(err, dynamo.ErrReadQuorum)) {
			return err
		}
		if _, cur, err := st.Get(ctx, key); err == nil {
			c = cur
		}
	}
}

// getRetry reads key, retrying up to 4 times after a quorum failure (a
// replica slow to answer on a loaded machine).
func getRetry(ctx context.Context, st *dynamo.Store, key []byte, opts ...dynamo.Option) ([]dynamo.Sibling, dynamo.Context, error) {
	for attempt := 0; ; attempt++ {
		sibs, c, err := st.Get(ctx, key, opts...)
		if err == nil || attempt == 4 || ctx.Err() != nil || !errors.Is(err, dynamo.ErrReadQuorum) {
			return sibs, c, err
		}
	}
}

// client is one closed-loop client: it sends its next request as soon as the
// last one returns. Its fields are its own until the run ends.
type client struct {
	b     *bench
	id    int
	st    *dynamo.Store
	rng   *rand.Rand
	zipf  *zipf  // with -dist zipf: the preloaded key's rank, hottest first
	buf   []byte // random bytes; values are windows of it
	putNS string // prefix of the put workload's fresh keys
	seq   int64

	hist     histogram // latencies of the successful requests in the window
	putHist  histogram // the puts among them, in the mixed workload
	lastPut  bool      // whether the mixed op just sent was a put
	errs     uint64
	firstErr error
	maxSibs  int
}

// phases of a run, read by every client before each request.
const (
	phaseWarmup = iota
	phaseMeasure
	phaseStop
)

// newClients returns -clients clients for the i-th workload of the command
// line, each with its own seeded random source.
func (b *bench) newClients(i int) ([]*client, error) {
	cfg := b.cfg
	clients := make([]*client, cfg.clients)
	for id := range clients {
		rng := rand.New(rand.NewPCG(cfg.seed, uint64(i)<<32|uint64(id)))
		clients[id] = &client{
			b: b, id: id, st: b.cl.stores[id%len(b.cl.stores)], rng: rng,
			buf:   randomBytes(rng, cfg.valueSize+4096),
			putNS: "put-" + strconv.Itoa(i) + "-" + strconv.Itoa(id) + "-",
		}
		if cfg.dist == "zipf" {
			z, err := newZipf(rng, cfg.zipfS, len(b.keys))
			if err != nil {
				return nil, err
			}
			clients[id].zipf = z
		}
	}
	return clients, nil
}

// run runs workload w (the i-th of the command line) and measures it.
func (b *bench) run(ctx context.Context, i int, w string) (result, error) {
	cfg := b.cfg
	clients, err := b.newClients(i)
	if err != nil {
		return result{}, err
	}
	var prof *os.File
	if cfg.cpuProfile != "" {
		var err error
		if prof, err = os.Create(profilePath(cfg.cpuProfile, w, len(cfg.workloads))); err != nil {
			return result{}, err
		}
		defer prof.Close()
	}

	var phase atomic.Int32
	var wg sync.WaitGroup
	for _, c := range clients {
		op := c.opFor(w)
		wg.Go(func() { c.loop(ctx, &phase, op) })
	}
	stopped := func() error {
		phase.Store(phaseStop)
		wg.Wait()
		return ctx.Err()
	}
	if err := sleep(ctx, cfg.warmup); err != nil {
		return result{}, stopped()
	}
	if prof != nil {
		if err := pprof.StartCPUProfile(prof); err != nil {
			_ = stopped()
			return result{}, err
		}
	}
	win := b.startWindow()
	phase.Store(phaseMeasure)
	werr := sleep(ctx, cfg.duration)
	phase.Store(phaseStop)
	end := b.endWindow()
	if prof != nil {
		pprof.StopCPUProfile()
	}
	if werr != nil {
		return result{}, stopped()
	}
	wg.Wait()
	if prof != nil {
		if err := prof.Close(); err != nil {
			return result{}, err
		}
	}

	res := b.summarize(w, clients, win, end)
	if w == "chain" {
		if res.MaxSiblings, err = b.readAll(ctx); err != nil {
			return result{}, err
		}
	}
	if w == "mixed" {
		var ph histogram
		for _, c := range clients {
			ph.merge(&c.putHist)
		}
		if ph.total > 0 {
			res.PutP50, res.PutP99 = micros(ph.quantile(0.5)), micros(ph.quantile(0.99))
		}
	}
	return res, nil
}

// sample is what the process and the cluster had done at one instant; two
// of them bound a measured window.
type sample struct {
	at    time.Time
	cpu   time.Duration
	cpuOK bool
	disk  storage.Stats
	rr    int64 // read repairs
	co    int64 // coalesced Gets
	sched *metrics.Float64Histogram
}

// startWindow samples the counters, then the clock.
func (b *bench) startWindow() sample {
	s := sample{disk: b.cl.diskStats(), sched: schedSample()}
	s.rr, s.co = b.cl.storeStats()
	s.cpu, s.cpuOK = processCPU()
	s.at = time.Now()
	return s
}

// endWindow samples the clock, then the counters.
func (b *bench) endWindow() sample {
	s := sample{at: time.Now()}
	s.cpu, s.cpuOK = processCPU()
	s.disk, s.sched = b.cl.diskStats(), schedSample()
	s.rr, s.co = b.cl.storeStats()
	return s
}

// summarize merges the clients' counts over the window from s0 to s1 into
// workload w's result, and reports errors on stderr.
func (b *bench) summarize(w string, clients []*client, s0, s1 sample) result {
	cfg := b.cfg
	elapsed := s1.at.Sub(s0.at)
	var h histogram
	res := result{Workload: w, Clients: cfg.clients, ValueSize: cfg.valueSize, Keys: cfg.keys, Dist: cfg.distName(), Duration: elapsed.Seconds()}
	for _, c := range clients {
		h.merge(&c.hist)
		res.Errors += c.errs
		res.MaxSiblings = max(res.MaxSiblings, c.maxSibs)
		if c.firstErr != nil && res.firstErr == nil {
			res.firstErr = c.firstErr
		}
	}
	res.Ops = h.total
	res.OpsPerSec = float64(h.total) / elapsed.Seconds()
	res.P50, res.P99, res.P999 = micros(h.quantile(0.5)), micros(h.quantile(0.99)), micros(h.quantile(0.999))
	if s0.cpuOK && h.total > 0 {
		res.CPUPerOp = micros((s1.cpu - s0.cpu) / time.Duration(h.total))
	}
	res.ReadRepairs = s1.rr - s0.rr
	res.CoalescedGets = s1.co - s0.co
	res.SchedP50 = micros(schedQuantile(s0.sched, s1.sched, 0.5))
	res.SchedP99 = micros(schedQuantile(s0.sched, s1.sched, 0.99))
	if commits := s1.disk.Commits - s0.disk.Commits; commits > 0 {
		res.UpdatesPerCommit = float64(s1.disk.Updates-s0.disk.Updates) / float64(commits)
	}
	if res.Errors > 0 {
		fmt.Fprintf(b.stderr, "dynamo-bench: %s: %d errors, the first: %v\n", w, res.Errors, res.firstErr)
	}
	return res
}

// loop sends requests until the phase is phaseStop, recording those sent in
// phaseMeasure.
func (c *client) loop(ctx context.Context, phase *atomic.Int32, op func(context.Context) error) {
	for {
		p := phase.Load()
		if p == phaseStop {
			return
		}
		start := time.Now()
		err := op(ctx)
		d := time.Since(start)
		switch {
		case p != phaseMeasure:
		case err != nil:
			c.errs++
			if c.firstErr == nil {
				c.firstErr = err
			}
		default:
			c.hist.record(d)
			if c.lastPut {
				c.putHist.record(d)
			}
		}
	}
}

func (c *client) opFor(w string) func(context.Context) error {
	switch w {
	case "put":
		return c.putFresh
	case "get":
		return c.get
	case "overwrite":
		return c.overwrite
	case "chain":
		return c.chain
	}
	return func(ctx context.Context) error {
		c.lastPut = c.rng.Float64() >= c.b.cfg.readRatio
		if !c.lastPut {
			return c.get(ctx)
		}
		return c.putRead(ctx)
	}
}

// putFresh writes a key never written before with the zero Context.
func (c *client) putFresh(ctx context.Context) error {
	c.seq++
	key := strconv.AppendInt([]byte(c.putNS), c.seq, 10) // a new slice: the Store may read it after Put returns
	return c.st.Put(ctx, key, c.value(), dynamo.Context{})
}

// pick returns the index of a preloaded key: uniform, or by -dist zipf the
// key of a zipf-drawn rank (key 0 the hottest).
func (c *client) pick() int {
	if c.zipf != nil {
		return c.zipf.rank() - 1
	}
	return c.rng.IntN(len(c.b.keys))
}

// get reads a picked preloaded key and keeps its Context for putRead.
func (c *client) get(ctx context.Context) error {
	_, err := c.read(ctx, c.pick())
	return err
}

// read Gets preloaded key k, checks that it has a value, and keeps its
// Context in the shared table.
func (c *client) read(ctx context.Context, k int, opts ...dynamo.Option) (dynamo.Context, error) {
	sibs, cx, err := c.st.Get(ctx, c.b.keys[k], opts...)
	if err != nil {
		return cx, err
	}
	if len(sibs) == 0 {
		return cx, fmt.Errorf("%w: %s", errMissing, c.b.keys[k])
	}
	c.maxSibs = max(c.maxSibs, len(sibs))
	c.b.contexts[k].Store(&cx)
	return cx, nil
}

// putRead overwrites a picked preloaded key with the Context of its latest
// Get (by any client).
func (c *client) putRead(ctx context.Context) error {
	k := c.pick()
	return c.st.Put(ctx, c.b.keys[k], c.value(), *c.b.contexts[k].Load())
}

// overwrite is one read-modify-write, as a real client overwrites a key: a
// Get of a picked preloaded key, then a Put with the Context that Get
// returned. The pair counts as one operation.
func (c *client) overwrite(ctx context.Context) error {
	k := c.pick()
	cx, err := c.read(ctx, k)
	if err != nil {
		return err
	}
	return c.st.Put(ctx, c.b.keys[k], c.value(), cx)
}

// chain overwrites a picked preloaded key without reading it: a
// PutReturning with the context of the key's latest write or read (the
// per-key table), which it replaces with the context the write returns.
// Writes of one key take turns (a lock per key), as one client's writes of
// a key would, so the chain creates no siblings. After a failed write, which
// may or may not have been applied, it reads the key again from all N
// replicas, so that the next write supersedes the failed one wherever it
// landed (if a replica holding it does not answer, it stays a sibling).
func (c *client) chain(ctx context.Context) error {
	k := c.pick()
	c.b.writing[k].Lock()
	defer c.b.writing[k].Unlock()
	next, err := c.st.PutReturning(ctx, c.b.keys[k], c.value(), *c.b.contexts[k].Load())
	if err != nil {
		_, _ = c.read(ctx, k, dynamo.WithR(c.b.cfg.n))
		return err
	}
	c.b.contexts[k].Store(&next)
	return nil
}

// readAll reads every preloaded key from all N replicas, outside any
// measured window, keeps its context in the table, and returns the most
// siblings one held. After a chain run that is 1 when every chained write
// superseded the last (a write that failed on a loaded machine may have
// left a version on one replica, which stays a sibling); before one, it
// replaces the contexts that the Puts of an earlier workload left stale.
func (b *bench) readAll(ctx context.Context) (int, error) {
	most := 0
	for k, key := range b.keys {
		sibs, c, err := getRetry(ctx, b.cl.stores[k%len(b.cl.stores)], key, dynamo.WithR(b.cfg.n))
		if err != nil {
			return 0, fmt.Errorf("read back %s: %w", key, err)
		}
		b.contexts[k].Store(&c)
		most = max(most, len(sibs))
	}
	return most, nil
}

// value returns a window of the client's random bytes; Put copies it.
func (c *client) value() []byte {
	off := c.rng.IntN(len(c.buf) - c.b.cfg.valueSize + 1)
	return c.buf[off : off+c.b.cfg.valueSize]
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// sleep waits for d or until ctx ends, returning ctx's error then.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// profilePath names the CPU profile of workload w: path itself when it is
// the only workload, else path with "-w" before its extension.
func profilePath(path, w string, workloads int) string {
	if workloads == 1 {
		return path
	}
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "-" + w + ext
}

func micros(d time.Duration) float64 {
	return float64(d.Round(100*time.Nanosecond)) / float64(time.Microsecond)
}
