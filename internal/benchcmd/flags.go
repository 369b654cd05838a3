// flags.go: the command line and its validation.
package benchcmd

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// errHelp is returned when -h or -help was given; the usage is printed.
var errHelp = flag.ErrHelp

// workloadNames lists the workloads -workloads may name (they run in the
// order named).
var workloadNames = []string{"put", "get", "mixed", "overwrite", "chain", "fill"}

// defaultWorkloads are the workloads run when -workloads is not given.
var defaultWorkloads = []string{"put", "get", "mixed"}

// config is the parsed command line.
type config struct {
	nodes      int
	n, r, w    int
	storage    string             // "bolt", "memory" or a key of extra
	extra      map[string]Storage // further storages (Main's argument)
	logSize    int64              // bolt.Options.LogSize; 0: the default
	dir        string             // parent of the temporary data directory; "" is os.TempDir
	clients    int
	duration   time.Duration
	warmup     time.Duration
	workloads  []string
	valueSize  int
	keys       int
	readRatio  float64
	dist       string  // "uniform" or "zipf": how get, mixed and overwrite pick keys
	zipfS      float64 // the zipf exponent
	seed       uint64
	json       bool
	cpuProfile string
	restart    bool          // after the workloads, restart each node and time it
	verify     bool          // after a restart, VerifyHashes
	aeInterval time.Duration // anti-entropy round interval; 0 is the library default
}

// storageKinds lists the names -storage takes.
func storageKinds(extra map[string]Storage) string {
	kinds := `"bolt" (bbolt, fsync on) or "memory"`
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		kinds += fmt.Sprintf(" or %q", k)
	}
	return kinds
}

func parseFlags(args []string, stderr io.Writer, extra map[string]Storage) (config, error) {
	c := config{extra: extra}
	var workloads string
	fs := flag.NewFlagSet("dynamo-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.nodes, "nodes", 3, "cluster size: nodes started in this process")
	fs.IntVar(&c.n, "n", 3, "N: replicas of each key")
	fs.IntVar(&c.r, "r", 2, "R: replicas a Get waits for")
	fs.IntVar(&c.w, "w", 2, "W: replicas a Put waits for")
	fs.StringVar(&c.storage, "storage", "bolt", "node storage: "+storageKinds(extra))
	fs.Int64Var(&c.logSize, "log-size", 0, "bolt storage: bytes of write-ahead log between checkpoints into bbolt (0: the library default)")
	fs.StringVar(&c.dir, "dir", "", "parent of the temporary data directory (default: the system temp dir); removed on exit")
	fs.IntVar(&c.clients, "clients", 16, "closed-loop clients; client i sends to node i mod -nodes")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured window of each workload")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "warm-up before each measured window; its samples are discarded")
	fs.StringVar(&workloads, "workloads", strings.Join(defaultWorkloads, ","), "comma-separated workloads: put, get, mixed, overwrite, chain, fill")
	fs.IntVar(&c.valueSize, "value-size", 1024, "bytes in each written value")
	fs.IntVar(&c.keys, "keys", 10000, "keys preloaded for get, mixed and overwrite; keys written by fill")
	fs.Float64Var(&c.readRatio, "read-ratio", 0.5, "fraction of mixed operations that are Gets")
	fs.StringVar(&c.dist, "dist", "uniform", `how get, mixed and overwrite pick preloaded keys: "uniform" or "zipf" (rank k drawn with probability proportional to k^-s)`)
	fs.Float64Var(&c.zipfS, "zipf-s", 0.99, "the exponent s of -dist zipf")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the clients' key and value choices")
	fs.DurationVar(&c.aeInterval, "ae-interval", 0, "anti-entropy round interval (0: the library default of 1 min; negative disables), to measure what background rounds cost")
	fs.BoolVar(&c.json, "json", false, "print one JSON object per workload instead of a table")
	fs.BoolVar(&c.restart, "restart", false, "after the workloads, close the node and start it again on its data, timing the storage's Open and the Store's start-up (-nodes 1 only)")
	fs.BoolVar(&c.verify, "verify", false, "with -restart: then rebuild the hash tree from the data and compare (Store.VerifyHashes), timed")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the measured window to `file`; with several workloads, one file each, named file with -<workload> before its extension")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for w := range strings.SplitSeq(workloads, ",") {
		if w = strings.TrimSpace(w); w != "" {
			c.workloads = append(c.workloads, w)
		}
	}
	return c, c.validate()
}

// distName names the key distribution in reports: "uniform" or "zipf(s)".
func (c config) distName() string {
	if c.dist == "zipf" {
		return "zipf(" + strconv.FormatFloat(c.zipfS, 'g', -1, 64) + ")"
	}
	return c.dist
}

// validate reports every problem with c at once.
func (c config) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.nodes < 1 {
		add("-nodes (%d) must be at least 1", c.nodes)
	}
	if c.n < 1 || c.n > c.nodes {
		add("-n (%d) must be between 1 and -nodes (%d)", c.n, c.nodes)
	}
	if c.r < 1 || c.r > c.n {
		add("-r (%d) must be between 1 and -n (%d)", c.r, c.n)
	}
	if c.w < 1 || c.w > c.n {
		add("-w (%d) must be between 1 and -n (%d)", c.w, c.n)
	}
	if c.restart && c.nodes != 1 {
		add("-restart needs -nodes 1 (-nodes is %d)", c.nodes)
	}
	if c.verify && !c.restart {
		add("-verify needs -restart")
	}
	if c.logSize < 0 {
		add("-log-size (%d) must be 0 or positive", c.logSize)
	}
	if _, ok := c.extra[c.storage]; !ok && c.storage != "bolt" && c.storage != "memory" {
		add(`-storage (%q) must be %s`, c.storage, storageKinds(c.extra))
	}
	if c.clients < 1 {
		add("-clients (%d) must be at least 1", c.clients)
	}
	if c.duration <= 0 {
		add("-duration (%v) must be positive", c.duration)
	}
	if c.warmup < 0 {
		add("-warmup (%v) must not be negative", c.warmup)
	}
	if len(c.workloads) == 0 {
		add("-workloads names no workload")
	}
	for _, w := range c.workloads {
		if !slices.Contains(workloadNames, w) {
			add("-workloads: unknown workload %q (want put, get, mixed, overwrite, chain or fill)", w)
		}
	}
	if c.valueSize < 0 || c.valueSize > 1<<20 {
		add("-value-size (%d) must be between 0 and 1048576", c.valueSize)
	}
	if c.keys < 1 {
		add("-keys (%d) must be at least 1", c.keys)
	}
	if c.dist != "uniform" && c.dist != "zipf" {
		add(`-dist (%q) must be "uniform" or "zipf"`, c.dist)
	}
	if !(c.zipfS > 0) || math.IsInf(c.zipfS, 0) {
		add("-zipf-s (%v) must be positive", c.zipfS)
	}
	if c.readRatio < 0 || c.readRatio > 1 {
		add("-read-ratio (%v) must be between 0 and 1", c.readRatio)
	}
	return errors.Join(errs...)
}
