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
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

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
