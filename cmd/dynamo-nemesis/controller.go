// controller.go: controller mode: start the node processes, run the clients
// and the seeded nemesis, heal, converge and check.

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// config configures a controller run.
type config struct {
	Duration    time.Duration // how long clients write under faults
	Seed        uint64
	Mode        string // union or lww
	Nodes       int
	Clients     int
	Keys        int
	Dir         string        // root of the data directories; empty means a temporary directory
	Interval    time.Duration // mean time between nemesis actions
	DeleteEvery time.Duration // time between deletes of a whole key; 0 means none
	Converge    time.Duration // bound on the convergence wait
	OpTimeout   time.Duration // bound of one client call on the node
	// RequestTimeout and ReplicaTimeout are the nodes' Config values; zero
	// means the node's defaults.
	RequestTimeout, ReplicaTimeout time.Duration
	Profile                        string
	Partitions                     int
	Rejoin                         time.Duration // the nodes' -rejoin
	Exe                            string        // the binary run as node; empty means os.Executable
	JSON                           bool
	Faults                         string // comma-separated kinds the nemesis uses: partition, kill, stop, heal
}

func defaultConfig() config {
	return config{
		Duration: 30 * time.Second, Seed: 1, Mode: "union", Nodes: 5, Clients: 5, Keys: 4,
		Interval: 2 * time.Second, DeleteEvery: 3 * time.Second, Converge: 60 * time.Second,
		OpTimeout: 4 * time.Second, Profile: "local", Partitions: 0, Rejoin: time.Second,
		Faults: "partition,kill,stop,heal",
	}
}

func parseConfig(args []string, stderr io.Writer) (config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("dynamo-nemesis", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		usage(stderr)
		fmt.Fprintln(stderr, "flags:")
		fs.PrintDefaults()
	}
	fs.DurationVar(&c.Duration, "duration", c.Duration, "how long clients write under faults")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the nemesis schedule and the clients' choices")
	fs.StringVar(&c.Mode, "mode", c.Mode, "union: siblings merged by set union (no loss allowed); lww: dynamo.Latest (losses expected, reported)")
	fs.IntVar(&c.Nodes, "nodes", c.Nodes, "node processes (N=3, R=2, W=2 needs at least 3)")
	fs.IntVar(&c.Clients, "clients", c.Clients, "client goroutines")
	fs.IntVar(&c.Keys, "keys", c.Keys, "set keys")
	fs.StringVar(&c.Dir, "dir", "", "directory for data directories and node logs (kept); default a temporary one, removed unless the run fails")
	fs.DurationVar(&c.Interval, "interval", c.Interval, "mean time between nemesis actions")
	fs.DurationVar(&c.DeleteEvery, "delete-every", c.DeleteEvery, "time between deletes of a whole key (0: no deletes)")
	fs.DurationVar(&c.Converge, "converge-timeout", c.Converge, "bound on waiting for convergence after the heal")
	fs.DurationVar(&c.OpTimeout, "op-timeout", c.OpTimeout, "bound of one client call on a node")
	fs.StringVar(&c.Profile, "profile", c.Profile, "gossip timing: lan, wan or local")
	fs.IntVar(&c.Partitions, "partitions", c.Partitions, "Config.Partitions of every node (0: the library default, 2^17)")
	fs.DurationVar(&c.Rejoin, "rejoin", c.Rejoin, "how often nodes rejoin peers held dead (0: never; memberlist alone does not heal a partition)")
	fs.StringVar(&c.Faults, "faults", c.Faults, "comma-separated fault kinds the nemesis draws from: partition, kill, stop, heal")
	fs.BoolVar(&c.JSON, "json", false, "also print the report as a JSON line")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return c, c.validate()
}

func (c config) validate() error {
	var errs []error
	if c.Mode != "union" && c.Mode != "lww" {
		errs = append(errs, fmt.Errorf("-mode %q: want union or lww", c.Mode))
	}
	if c.Nodes < 3 || c.Nodes > 50 {
		errs = append(errs, fmt.Errorf("-nodes %d: want 3 to 50", c.Nodes))
	}
	if c.Clients < 1 || c.Keys < 1 {
		errs = append(errs, errors.New("-clients and -keys must be at least 1"))
	}
	if _, err := parseFaults(c.Faults); err != nil {
		errs = append(errs, err)
	}
	if c.Duration <= 0 || c.Interval <= 0 || c.Converge <= 0 || c.OpTimeout <= 0 || c.DeleteEvery < 0 || c.Rejoin < 0 {
		errs = append(errs, errors.New("durations must be positive"))
	}
	return errors.Join(errs...)
}

// runControllerMain runs the controller and returns the exit code: 0 when
// the checker passed, 1 when it did not, 2 on a usage or setup error.
func runControllerMain(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "dynamo-nemesis:", err)
		return 2
	}
	c := newController(cfg, stderr)
	defer c.killAll()
	rep, err := c.run(context.Background())
	if err != nil {
		fmt.Fprintln(stderr, "dynamo-nemesis:", err)
		return 2
	}
	fmt.Fprintln(stdout, rep.line())
	if cfg.JSON {
		b, _ := json.Marshal(rep)
		fmt.Fprintln(stdout, string(b))
	}
	if !rep.OK {
		fmt.Fprintf(stderr, "dynamo-nemesis: FAILED: %s (node data and logs kept in %s)\n", strings.Join(rep.Failures, "; "), c.root)
		return 1
	}
	return 0
}

// faultCounts counts what the nemesis did.
type faultCounts struct {
	Partitions atomic.Int64
	Heals      atomic.Int64
	Kills      atomic.Int64
	Restarts   atomic.Int64
	Stops      atomic.Int64
	Conts      atomic.Int64
}

// Faults is a snapshot of faultCounts, for the report.
type Faults struct {
	Partitions int64 `json:"partitions"`
	Heals      int64 `json:"heals"`
	Kills      int64 `json:"kills"`
	Restarts   int64 `json:"restarts"`
	Stops      int64 `json:"stops"`
	Conts      int64 `json:"conts"`
}

func (f *faultCounts) snapshot() Faults {
	return Faults{f.Partitions.Load(), f.Heals.Load(), f.Kills.Load(), f.Restarts.Load(), f.Stops.Load(), f.Conts.Load()}
}

// controller runs one nemesis run.
type controller struct {
	cfg    config
	logw   io.Writer
	logMu  sync.Mutex
	begin  time.Time
	root   string
	rmRoot bool
	client *http.Client
	procs  []*proc
	faults faultCounts
	rec    recorder
	gate   *keyGate

	// blocked[i][j]: nodes i and j are partitioned from each other. Only the
	// nemesis goroutine (and the set-up and heal before and after it) use it.
	blocked [][]bool
}

func newController(cfg config, logw io.Writer) *controller {
	return &controller{
		cfg:  cfg,
		logw: logw,
		gate: newKeyGate(),
		client: &http.Client{
			Timeout:   cfg.OpTimeout + 2*time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 4 * cfg.Clients, IdleConnTimeout: 5 * time.Second},
		},
	}
}

func (c *controller) logf(format string, args ...any) {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	fmt.Fprintf(c.logw, "nemesis %6.2fs: %s\n", time.Since(c.begin).Seconds(), fmt.Sprintf(format, args...))
}

// killAll SIGKILLs every node process still running and waits for it. It is
// idempotent; run calls it too.
func (c *controller) killAll() {
	for _, p := range c.procs {
		p.kill()
	}
	c.client.CloseIdleConnections()
}

// Faults returns what the nemesis did so far.
func (c *controller) Faults() Faults { return c.faults.snapshot() }

// run runs the whole experiment and returns the checker's report. An error
// means the run could not be set up or the cluster could not be brought
// back, not that the checker failed.
func (c *controller) run(ctx context.Context) (rep report, err error) {
	cfg := c.cfg
	c.begin = time.Now()
	if err := cfg.validate(); err != nil {
		return rep, err
	}
	exe := cfg.Exe
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return rep, err
		}
	}
	c.root = cfg.Dir
	if c.root == "" {
		if c.root, err = os.MkdirTemp("", "dynamo-nemesis-"); err != nil {
			return rep, err
		}
		c.rmRoot = true
	}
	defer func() {
		c.shutdown()
		if c.rmRoot && err == nil && rep.OK {
			_ = os.RemoveAll(c.root)
		}
	}()
	c.blocked = make([][]bool, cfg.Nodes)
	for i := range cfg.Nodes {
		c.blocked[i] = make([]bool, cfg.Nodes)
		p, err := newProc(i, c.root)
		if err != nil {
			return rep, err
		}
		c.procs = append(c.procs, p)
	}
	c.logf("starting %d nodes in %s (mode %s, seed %d)", cfg.Nodes, c.root, cfg.Mode, cfg.Seed)
	if err := c.startCluster(exe); err != nil {
		return rep, err
	}
	c.logf("cluster formed; running clients and nemesis for %v", cfg.Duration)

	wctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	var nextDelete atomic.Int64
	nextDelete.Store(time.Now().Add(cfg.DeleteEvery).UnixNano())
	for i := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.clientLoop(wctx, i, &nextDelete)
		}()
	}
	nemesisErr := make(chan error, 1)
	go func() { nemesisErr <- c.nemesis(wctx, exe) }()
	wg.Wait()
	if err := <-nemesisErr; err != nil {
		return rep, err
	}
	c.logf("workload done: %s; faults %+v", c.rec.summary(), c.faults.snapshot())

	if err := c.healAll(exe); err != nil {
		return rep, err
	}
	final, convergeMS, converged, why := c.converge(ctx)
	if converged {
		c.logf("converged in %d ms", convergeMS)
	} else {
		c.logf("NOT converged after %v: %s", cfg.Converge, why)
	}
	rep = check(c.rec.snapshot(), final, cfg.Mode)
	rep.Seed, rep.Mode, rep.Faults = cfg.Seed, cfg.Mode, c.faults.snapshot()
	rep.ConvergeMS, rep.Converged = convergeMS, converged
	for _, sibs := range final {
		rep.MaxSiblings = max(rep.MaxSiblings, len(sibs))
	}
	rep.MaxSiblings = max(rep.MaxSiblings, int(c.rec.maxSiblings.Load()))
	rep.MaxContextBytes = c.rec.maxContext.Load()
	for _, p := range c.procs {
		for _, e := range p.unexpectedExits() {
			rep.Crashes = append(rep.Crashes, p.id+" "+e)
		}
	}
	rep.finish(why)
	return rep, nil
}

// shutdown stops every node with SIGTERM (SIGKILL after a while).
func (c *controller) shutdown() {
	var wg sync.WaitGroup
	for _, p := range c.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if why := p.terminate(10 * time.Second); why != "" {
				c.logf("%s did not exit cleanly: %s", p.id, why)
			}
		}()
	}
	wg.Wait()
	c.client.CloseIdleConnections()
}

// nodeArgs returns the node flags of p: fixed ports when p has run before,
// and the peers and block list as they stand.
func (c *controller) nodeArgs(p *proc, freshPorts bool) []string {
	ctl, data, gossip := p.addrs()
	if freshPorts || ctl == "" {
		ctl, data, gossip = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	}
	args := []string{
		"-id", p.id, "-data", p.dir, "-listen", data, "-gossip", gossip, "-ctl", ctl,
		"-mode", c.cfg.Mode, "-profile", c.cfg.Profile, "-partitions", strconv.Itoa(c.cfg.Partitions),
		"-rejoin", c.cfg.Rejoin.String(), "-op-timeout", c.cfg.OpTimeout.String(),
		"-peers", c.peerList(p), "-block", strings.Join(c.blockList(p.idx), ","),
	}
	if c.cfg.RequestTimeout > 0 {
		args = append(args, "-request-timeout", c.cfg.RequestTimeout.String())
	}
	if c.cfg.ReplicaTimeout > 0 {
		args = append(args, "-replica-timeout", c.cfg.ReplicaTimeout.String())
	}
	return args
}

// peerList is "id=gossip,..." of the nodes other than p that have run.
func (c *controller) peerList(p *proc) string {
	var out []string
	for _, q := range c.procs {
		if _, _, g := q.addrs(); q != p && g != "" {
			out = append(out, q.id+"="+g)
		}
	}
	return strings.Join(out, ",")
}

// blockList is the addresses node i must block under the current partition.
func (c *controller) blockList(i int) []string {
	out := []string{}
	for j, cut := range c.blocked[i] {
		if cut {
			_, data, gossip := c.procs[j].addrs()
			if data != "" {
				out = append(out, data, gossip)
			}
		}
	}
	return out
}

// startProc starts p on its ports (or fresh ones the first time), falling
// back to fresh ports if they are taken.
func (c *controller) startProc(exe string, p *proc) error {
	_, _, g := p.addrs()
	err := p.start(exe, c.nodeArgs(p, false))
	if err != nil && g != "" {
		c.logf("%s did not restart on its ports (%v); trying fresh ports", p.id, err)
		err = p.start(exe, c.nodeArgs(p, true))
		if err == nil {
			c.pushPeers()
			c.pushBlocks(false)
		}
	}
	return err
}

// startCluster starts the first node, then the others joining it, and waits
// until every node holds every other reachable and no transfer is pending.
func (c *controller) startCluster(exe string) error {
	first := c.procs[0]
	if err := first.start(exe, c.nodeArgs(first, true)); err != nil {
		return err
	}
	if err := first.waitReady(startTimeout); err != nil {
		return err
	}
	for _, p := range c.procs[1:] {
		if err := p.start(exe, c.nodeArgs(p, true)); err != nil {
			return err
		}
	}
	for _, p := range c.procs[1:] {
		if err := p.waitReady(startTimeout); err != nil {
			return err
		}
	}
	c.pushPeers()
	return c.waitHealthy(startTimeout)
}

// pushPeers gives every running node the gossip addresses of all the others.
func (c *controller) pushPeers() {
	peers := map[string]string{}
	for _, p := range c.procs {
		if _, _, g := p.addrs(); g != "" {
			peers[p.id] = g
		}
	}
	body, _ := json.Marshal(peers)
	for _, p := range c.procs {
		if c.procState(p) == stateUp {
			ctl, _, _ := p.addrs()
			_, _ = c.post(ctl, "/peers", body, time.Second)
		}
	}
}

// waitHealthy polls until every node is ready, holds every node reachable
// and has no pending transfer, or timeout passes.
func (c *controller) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for round := 0; ; round++ {
		why := c.unhealthy()
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) || round > 100000 {
			return fmt.Errorf("cluster not healthy after %v: %s", timeout, why)
		}
		<-tick.C
	}
}

// unhealthy returns why the cluster is not fully formed, or "".
func (c *controller) unhealthy() string {
	for _, p := range c.procs {
		ctl, _, _ := p.addrs()
		var h healthReply
		if err := c.getJSON(ctl, "/health", &h, time.Second); err != nil {
			return fmt.Sprintf("%s: %v", p.id, err)
		}
		if !h.Ready {
			return p.id + " not ready"
		}
		if len(h.Members) != len(c.procs) {
			return fmt.Sprintf("%s sees %d members", p.id, len(h.Members))
		}
		for id, up := range h.Members {
			if !up {
				return fmt.Sprintf("%s holds %s unreachable", p.id, id)
			}
		}
		if h.PendingTransfers > 0 {
			return fmt.Sprintf("%s has %d pending transfers", p.id, h.PendingTransfers)
		}
	}
	return ""
}

func (c *controller) procState(p *proc) procState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// pushBlocks sends every running node its block list; with onlyStale, only
// the nodes whose last push failed or that restarted since.
func (c *controller) pushBlocks(onlyStale bool) {
	for _, p := range c.procs {
		p.mu.Lock()
		skip := p.state != stateUp || (onlyStale && p.synced)
		ctl := p.ctl
		p.mu.Unlock()
		if skip {
			continue
		}
		body, _ := json.Marshal(partitionRequest{Block: c.blockList(p.idx)})
		status, err := c.post(ctl, "/partition", body, time.Second)
		ok := err == nil && status == http.StatusOK
		p.mu.Lock()
		p.synced = ok
		p.mu.Unlock()
	}
}

// post sends a JSON body and returns the status.
func (c *controller) post(ctl, path string, body []byte, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ctl+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// getJSON GETs path and decodes a 200 reply into v.
func (c *controller) getJSON(ctl, path string, v any, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ctl+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, v)
}

// action is one kind of nemesis step.
type action int

const (
	actPartition action = iota
	actKill
	actStop
	actHeal
)

var actionNames = map[string]action{"partition": actPartition, "kill": actKill, "stop": actStop, "heal": actHeal}

// parseFaults parses -faults into the nemesis's deck.
func parseFaults(s string) ([]action, error) {
	var deck []action
	for _, name := range splitList(s) {
		a, ok := actionNames[name]
		if !ok {
			return nil, fmt.Errorf("-faults: unknown kind %q (want partition, kill, stop or heal)", name)
		}
		if !slices.Contains(deck, a) {
			deck = append(deck, a)
		}
	}
	if len(deck) == 0 {
		return nil, errors.New("-faults is empty")
	}
	return deck, nil
}

// nemesis runs the seeded fault schedule until ctx ends: every Interval or
// so (uniform in [Interval/2, 3·Interval/2]) the next action of a shuffled
// deck of {partition, kill, stop, heal} (or the kinds -faults names); killed nodes restart 1 to 4 s later
// on the same data directory, stopped ones continue 0.5 to 3 s later. At most
// (nodes-1)/2 nodes are down or stopped at once. Every choice comes from one
// math/rand/v2 source seeded with Seed.
func (c *controller) nemesis(ctx context.Context, exe string) error {
	cfg := c.cfg
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6e656d65736973))
	maxFaulty := max(1, (cfg.Nodes-1)/2)
	between := func() time.Duration {
		return cfg.Interval/2 + time.Duration(rng.Int64N(int64(cfg.Interval)+1))
	}
	var deck []action
	next := time.Now().Add(between())
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	const maxSteps = 1 << 20 // bounded; the ticker and ctx end it far sooner
	for step := 0; step < maxSteps; step++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		now := time.Now()
		for _, p := range c.procs {
			p.mu.Lock()
			st, restartAt, contAt := p.state, p.restartAt, p.contAt
			p.mu.Unlock()
			switch {
			case st == stateDown && now.After(restartAt):
				if restartAt.IsZero() {
					c.logf("%s CRASHED: %v; restarting it", p.id, p.unexpectedExits())
				}
				if err := c.startProc(exe, p); err != nil {
					return err
				}
				c.faults.Restarts.Add(1)
				c.logf("restart %s (block %v)", p.id, c.blockList(p.idx))
			case st == stateStopped && now.After(contAt):
				if err := p.signal(syscall.SIGCONT); err != nil {
					return fmt.Errorf("SIGCONT %s: %w", p.id, err)
				}
				p.mu.Lock()
				p.state = stateUp
				p.mu.Unlock()
				c.faults.Conts.Add(1)
				c.logf("SIGCONT %s", p.id)
			}
		}
		c.pushBlocks(true)
		if now.Before(next) {
			continue
		}
		next = now.Add(between())
		if len(deck) == 0 {
			deck, _ = parseFaults(cfg.Faults)
			rng.Shuffle(len(deck), func(i, j int) { deck[i], deck[j] = deck[j], deck[i] })
		}
		act := deck[0]
		deck = deck[1:]
		var up []*proc
		faulty := 0
		for _, p := range c.procs {
			if c.procState(p) == stateUp {
				up = append(up, p)
			} else {
				faulty++
			}
		}
		if (act == actKill || act == actStop) && (faulty >= maxFaulty || len(up) == 0) {
			if !strings.Contains(cfg.Faults, "partition") {
				continue // too many nodes down already; wait for the next turn
			}
			act = actPartition
		}
		switch act {
		case actPartition:
			c.partition(rng)
		case actHeal:
			c.setBlocked(nil)
			c.faults.Heals.Add(1)
			c.logf("heal")
		case actKill:
			p := up[rng.IntN(len(up))]
			p.kill()
			p.mu.Lock()
			p.restartAt = time.Now().Add(time.Second + time.Duration(rng.Int64N(int64(3*time.Second))))
			p.mu.Unlock()
			c.faults.Kills.Add(1)
			c.logf("SIGKILL %s", p.id)
		case actStop:
			p := up[rng.IntN(len(up))]
			if err := p.signal(syscall.SIGSTOP); err != nil {
				return fmt.Errorf("SIGSTOP %s: %w", p.id, err)
			}
			p.mu.Lock()
			p.state = stateStopped
			p.contAt = time.Now().Add(500*time.Millisecond + time.Duration(rng.Int64N(int64(2500*time.Millisecond))))
			p.mu.Unlock()
			c.faults.Stops.Add(1)
			c.logf("SIGSTOP %s", p.id)
		}
	}
	return nil
}

// partition cuts the cluster in one of three shapes: two random halves, one
// node isolated, or a bridge (two halves and one node that sees both).
func (c *controller) partition(rng *rand.Rand) {
	n := len(c.procs)
	perm := rng.Perm(n)
	var a, b []int
	var shape string
	switch rng.IntN(3) {
	case 0:
		shape = "halves"
		a, b = perm[:n/2], perm[n/2:]
	case 1:
		shape = "isolate"
		a, b = perm[:1], perm[1:]
	default:
		shape = "bridge"
		a, b = perm[:n/2], perm[n/2+1:]
		defer func(bridge int) { c.logf("  bridge node %s", c.procs[bridge].id) }(perm[n/2])
	}
	c.setBlocked(func(i, j int) bool {
		return (slices.Contains(a, i) && slices.Contains(b, j)) || (slices.Contains(b, i) && slices.Contains(a, j))
	})
	c.faults.Partitions.Add(1)
	c.logf("partition %s %v | %v", shape, c.ids(a), c.ids(b))
}

func (c *controller) ids(idx []int) []string {
	out := make([]string, len(idx))
	for k, i := range idx {
		out[k] = c.procs[i].id
	}
	slices.Sort(out)
	return out
}

// setBlocked replaces the partition (nil heals) and pushes it to every
// running node.
func (c *controller) setBlocked(cut func(i, j int) bool) {
	for i := range c.blocked {
		for j := range c.blocked[i] {
			c.blocked[i][j] = cut != nil && i != j && cut(i, j)
		}
	}
	for _, p := range c.procs {
		p.mu.Lock()
		p.synced = false
		p.mu.Unlock()
	}
	c.pushBlocks(true)
}

// healAll ends every fault: no partition, every stopped node continued,
// every killed node restarted; then it waits until every node is ready.
func (c *controller) healAll(exe string) error {
	c.setBlocked(nil)
	for _, p := range c.procs {
		switch c.procState(p) {
		case stateStopped:
			if err := p.signal(syscall.SIGCONT); err != nil {
				return fmt.Errorf("SIGCONT %s: %w", p.id, err)
			}
			p.mu.Lock()
			p.state = stateUp
			p.mu.Unlock()
			c.faults.Conts.Add(1)
		case stateDown:
			if err := c.startProc(exe, p); err != nil {
				return err
			}
			c.faults.Restarts.Add(1)
		}
	}
	c.pushBlocks(true)
	for _, p := range c.procs {
		if err := p.waitReady(startTimeout); err != nil {
			return fmt.Errorf("after the heal: %w\n%s", err, p.logTail(3000))
		}
	}
	c.pushBlocks(true)
	c.pushPeers()
	c.logf("healed: every node running, no partition")
	return nil
}

// converge reads every key from every node at R=3 (which also repairs) and
// every node's local replica, until the reads agree and every primary's
// replica holds what they return, or Converge passes. It returns the agreed
// state, or when it gave up, the union of what the reads returned.
func (c *controller) converge(ctx context.Context) (final map[string][]siblingView, ms int64, ok bool, why string) {
	start := time.Now()
	deadline := start.Add(c.cfg.Converge)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	seen := map[string]map[int64]siblingView{} // union of every read, for a run that never converges
	for round := 0; round < 100000; round++ {
		final, why = map[string][]siblingView{}, ""
		for k := range c.cfg.Keys {
			key := keyName(k)
			var want string
			for _, p := range c.procs {
				ctl, _, _ := p.addrs()
				var rr readReply
				if err := c.getJSON(ctl, "/read?r=3&key="+url.QueryEscape(key), &rr, c.cfg.OpTimeout+time.Second); err != nil {
					why = fmt.Sprintf("read %s on %s: %v", key, p.id, err)
					continue
				}
				c.rec.sawRead(rr)
				if seen[key] == nil {
					seen[key] = map[int64]siblingView{}
				}
				for _, sb := range rr.Siblings {
					seen[key][sb.Writer] = sb
				}
				got := canonical(rr.Siblings)
				if want == "" {
					want, final[key] = got, rr.Siblings
				} else if got != want && why == "" {
					why = fmt.Sprintf("%s: %s reads %s, %s read %s", key, p.id, short(got), c.procs[0].id, short(want))
				}
			}
			// Every primary holds the same siblings, and they resolve (in
			// lww mode: dynamo.Latest) to what the reads return.
			var replica, replicaOf string
			for _, p := range c.procs {
				ctl, _, _ := p.addrs()
				var lr readReply
				if err := c.getJSON(ctl, "/local?key="+url.QueryEscape(key), &lr, time.Second); err != nil {
					if why == "" {
						why = fmt.Sprintf("local %s on %s: %v", key, p.id, err)
					}
					continue
				}
				if !lr.Primary || why != "" {
					continue
				}
				got, resolved := canonical(lr.Siblings), canonical(lr.Siblings)
				if c.cfg.Mode == "lww" {
					resolved = canonical(lr.Resolved)
				}
				switch {
				case replica != "" && got != replica:
					why = fmt.Sprintf("%s: primary %s holds %s, primary %s holds %s", key, p.id, short(got), replicaOf, short(replica))
				case resolved != want:
					why = fmt.Sprintf("%s: primary %s holds %s, reads return %s", key, p.id, short(resolved), short(want))
				}
				replica, replicaOf = got, p.id
			}
		}
		if why == "" {
			return final, time.Since(start).Milliseconds(), true, ""
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		<-tick.C
	}
	final = map[string][]siblingView{}
	for key, m := range seen {
		for _, sb := range m {
			final[key] = append(final[key], sb)
		}
	}
	return final, -1, false, why
}

// canonical is a sibling list's comparable form.
func canonical(sibs []siblingView) string {
	var b strings.Builder
	for _, sb := range sibs {
		fmt.Fprintf(&b, "%d:%v;", sb.Writer, sb.Elems)
	}
	if b.Len() == 0 {
		return "(none)"
	}
	return b.String()
}

func short(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

func keyName(k int) string { return "set-" + strconv.Itoa(k) }

// keyGate keeps adds and deletes of one key apart in real time: a delete
// waits for the adds in flight on its key to finish, and no add to the key
// starts meanwhile. Without it nearly every element a delete covers comes
// back at once in a concurrent add's sibling (each add rewrites the whole
// set it read), and the delete tests little.
type keyGate struct {
	mu       sync.Mutex
	cond     *sync.Cond
	inflight map[string]int
	deleting map[string]bool
}

func newKeyGate() *keyGate {
	g := &keyGate{inflight: map[string]int{}, deleting: map[string]bool{}}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// enterAdd registers an add of key, unless key is being deleted.
func (g *keyGate) enterAdd(key string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.deleting[key] {
		return false
	}
	g.inflight[key]++
	return true
}

func (g *keyGate) exitAdd(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inflight[key]--
	g.cond.Broadcast()
}

// beginDelete blocks new adds of key and waits for those in flight, which
// end within the client's timeout.
func (g *keyGate) beginDelete(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.deleting[key] = true
	for g.inflight[key] > 0 {
		g.cond.Wait()
	}
}

func (g *keyGate) endDelete(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.deleting, key)
}

// clientLoop adds unique elements to random keys through random nodes
// until ctx ends, with an occasional read (R=2) and, when a delete is due,
// a delete of a whole key.
func (c *controller) clientLoop(ctx context.Context, id int, nextDelete *atomic.Int64) {
	rng := rand.New(rand.NewPCG(c.cfg.Seed, uint64(id)+1))
	pause := time.NewTimer(0)
	defer pause.Stop()
	<-pause.C
	const maxOps = 1 << 20
	for op := 0; op < maxOps && ctx.Err() == nil; op++ {
		key := keyName(rng.IntN(c.cfg.Keys))
		p := c.procs[rng.IntN(len(c.procs))]
		ctl, _, _ := p.addrs()
		due := nextDelete.Load()
		ok := true
		switch {
		case c.cfg.DeleteEvery > 0 && time.Now().UnixNano() >= due &&
			nextDelete.CompareAndSwap(due, time.Now().Add(c.cfg.DeleteEvery).UnixNano()):
			c.gate.beginDelete(key)
			ok = c.doDelete(ctl, p.id, key)
			c.gate.endDelete(key)
		case rng.IntN(20) == 0:
			var rr readReply
			err := c.getJSON(ctl, "/read?r=2&key="+url.QueryEscape(key), &rr, c.cfg.OpTimeout+time.Second)
			if ok = err == nil; ok {
				c.rec.sawRead(rr)
			}
		case c.gate.enterAdd(key):
			ok = c.doAdd(ctl, key)
			c.gate.exitAdd(key)
		}
		if !ok {
			// Back off a little after a failure, so a dead node is not
			// hammered in a tight loop.
			pause.Reset(20 * time.Millisecond)
			select {
			case <-ctx.Done():
			case <-pause.C:
			}
		}
	}
}

// doAdd adds a fresh element to key through the node at ctl and records the
// outcome. The request is not tied to the run's ctx: once sent, it runs to
// its answer or its timeout, so every outcome is known or "unknown".
func (c *controller) doAdd(ctl, key string) bool {
	elem := c.rec.nextElem.Add(1)
	a := addRec{Key: key, Elem: elem, Start: time.Now()}
	rctx, cancel := context.WithTimeout(context.Background(), c.cfg.OpTimeout+2*time.Second)
	defer cancel()
	u := fmt.Sprintf("http://%s/add?key=%s&elem=%d", ctl, url.QueryEscape(key), elem)
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, u, nil)
	if err != nil {
		a.Err = err.Error()
	} else if resp, err := c.client.Do(req); err != nil {
		a.Err = classifyNetErr(err)
	} else {
		var rep addReply
		body, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		switch {
		case rerr != nil:
			a.Err = classifyNetErr(rerr)
		case resp.StatusCode == http.StatusOK && json.Unmarshal(body, &rep) == nil:
			a.Acked, a.Writer, a.Superseded = true, rep.Writer, rep.Superseded
			c.rec.sawSiblings(rep.Siblings)
		default:
			var er errorReply
			_ = json.Unmarshal(body, &er)
			a.Err = strconv.Itoa(resp.StatusCode) + " " + errorKind(er.Error)
		}
	}
	a.End = time.Now()
	c.rec.add(a)
	return a.Acked
}

// classifyNetErr names a client-side failure: no answer from the node.
func classifyNetErr(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "Client.Timeout") || strings.Contains(msg, "timeout"):
		return "no answer in time"
	case strings.Contains(msg, "connection refused"):
		return "connection refused"
	case strings.Contains(msg, "EOF") || strings.Contains(msg, "reset by peer") || strings.Contains(msg, "broken pipe"):
		return "connection broken"
	}
	return msg
}

// errorKind shortens a node's error text to its kind: the text before the
// second colon ("dynamo: write quorum not met").
func errorKind(msg string) string {
	parts := strings.SplitN(msg, ": ", 3)
	if len(parts) > 2 {
		parts = parts[:2]
	}
	return strings.Join(parts, ": ")
}

// doDelete deletes key through the node at ctl and records what the delete
// covered and whether it was acknowledged.
func (c *controller) doDelete(ctl, id, key string) bool {
	d := delRec{Key: key, Start: time.Now(), Outcome: delUnknown}
	rctx, cancel := context.WithTimeout(context.Background(), c.cfg.OpTimeout+2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, "http://"+ctl+"/delete?key="+url.QueryEscape(key), nil)
	if err == nil {
		var resp *http.Response
		if resp, err = c.client.Do(req); err == nil {
			var rep deleteReply
			body, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
			resp.Body.Close()
			if rerr == nil && json.Unmarshal(body, &rep) == nil {
				switch {
				case resp.StatusCode == http.StatusOK:
					d.Outcome = delAcked
				case rep.Stage == "get":
					d.Outcome = delNotWritten
				case rep.Stage == "delete":
					d.Outcome = delFailed
				}
				d.Elems, d.Writers = rep.Elems, rep.Writers
				c.rec.sawSiblings(rep.Siblings)
			}
		}
	}
	d.End = time.Now()
	c.rec.del(d)
	c.logf("delete %s via %s: %s, covering %d elements of %d versions", key, id, d.Outcome, len(d.Elems), len(d.Writers))
	return d.Outcome == delAcked
}
