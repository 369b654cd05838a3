// node.go: node mode: one dynamo node process with fault-injecting
// transports, a control endpoint for partitions, and the set workload's
// client endpoints.

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/auth"
	"github.com/dynamo-kv/dynamo/membership/gossip"
	"github.com/dynamo-kv/dynamo/transport/tcp"
)

// nodeEnv, set to 1, makes the binary (or the test binary) run node mode.
const nodeEnv = "DYNAMO_NEMESIS_NODE"

// nodeFlags are the settings of one node process.
type nodeFlags struct {
	id, data, listen, gossip, ctl  string
	peers                          string // "id=gossipaddr,..." of the other nodes
	block                          string // comma-separated addresses blocked from the start
	mode                           string
	profile                        string
	partitions                     int
	rejoin, requestTimeout, opTime time.Duration
	replicaTimeout                 time.Duration
}

func parseNodeFlags(args []string, stderr io.Writer) (nodeFlags, error) {
	fs := flag.NewFlagSet("dynamo-nemesis node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f nodeFlags
	fs.StringVar(&f.id, "id", "", "node ID, stable across restarts")
	fs.StringVar(&f.data, "data", "", "data directory; reuse it to restart the node")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:0", "TCP address for data traffic")
	fs.StringVar(&f.gossip, "gossip", "127.0.0.1:0", "memberlist address (TCP and UDP)")
	fs.StringVar(&f.ctl, "ctl", "127.0.0.1:0", "HTTP address of the control and client endpoints")
	fs.StringVar(&f.peers, "peers", "", "comma-separated id=gossipaddr of the other nodes (joined at start, rejoined when unreachable)")
	fs.StringVar(&f.block, "block", "", "comma-separated peer addresses blocked from the start")
	fs.StringVar(&f.mode, "mode", "union", "union: keep siblings; lww: Config.Resolver = dynamo.Latest")
	fs.StringVar(&f.profile, "profile", string(gossip.ProfileLocal), "gossip timing: lan, wan or local")
	fs.IntVar(&f.partitions, "partitions", 0, "Config.Partitions (the same on every node); 0 means the library default")
	fs.DurationVar(&f.rejoin, "rejoin", time.Second, "how often to rejoin peers the failure detector holds dead; 0 never")
	fs.DurationVar(&f.requestTimeout, "request-timeout", time.Second, "Config.RequestTimeout")
	fs.DurationVar(&f.replicaTimeout, "replica-timeout", 0, "Config.ReplicaTimeout; 0 means the library default")
	fs.DurationVar(&f.opTime, "op-timeout", 4*time.Second, "bound of one client endpoint call")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if f.id == "" || f.data == "" {
		return f, errors.New("node mode needs -id and -data")
	}
	if f.mode != "union" && f.mode != "lww" {
		return f, fmt.Errorf("-mode %q: want union or lww", f.mode)
	}
	return f, nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// parsePeers parses "id=addr,..." into a map.
func parsePeers(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range splitList(s) {
		id, addr, ok := strings.Cut(item, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("peer %q is not id=addr", item)
		}
		out[id] = addr
	}
	return out, nil
}

// runNodeMain parses the node flags and runs the node until SIGTERM or
// SIGINT. It returns the exit code.
func runNodeMain(args []string, stdout, stderr io.Writer) int {
	f, err := parseNodeFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "dynamo-nemesis node:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := runNode(ctx, f, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "dynamo-nemesis node:", err)
		return 1
	}
	return 0
}

// testSecret authenticates and encrypts the nemesis cluster's data port and
// gossip, as a production cluster's secret would. It is public: never reuse
// it.
var testSecret = []byte("dynamo-nemesis test cluster secret; public, never reuse")

// nodeServer is a running node and its HTTP endpoints.
type nodeServer struct {
	f      nodeFlags
	log    *slog.Logger
	blocks *blockList
	gossip *gossip.Gossip
	node   atomic.Pointer[dynamo.Node] // nil until the node has joined and opened

	mu    sync.Mutex
	peers map[string]string // id -> gossip address, for joins
	self  string            // this node's gossip address
}

// runNode runs one node until ctx ends. It prints "listening ctl=ADDR
// data=ADDR gossip=ADDR" once the control endpoint serves (partitions can be
// switched from then on), then joins the cluster through -peers, retrying
// until a peer answers, opens the store, and prints "ready ctl=ADDR
// data=ADDR gossip=ADDR actor=ACTOR".
func runNode(ctx context.Context, f nodeFlags, stdout, stderr io.Writer) (err error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", f.id)
	peers, err := parsePeers(f.peers)
	if err != nil {
		return err
	}
	s := &nodeServer{f: f, log: log, blocks: newBlockList(splitList(f.block)), peers: peers}

	creds, err := auth.FromSecrets(dynamo.DefaultCluster, f.id, auth.Secrets{testSecret})
	if err != nil {
		return err
	}
	gossipKeys, err := auth.Secrets{testSecret}.GossipKeys(dynamo.DefaultCluster)
	if err != nil {
		return err
	}
	tr, err := tcp.Listen(f.listen, tcp.Options{Logger: log, TLS: creds.TLSConfig(), Identify: creds.PeerNodeID})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, tr.Close()) }()
	nt, err := gossip.NewNetTransport(f.gossip, log)
	if err != nil {
		return err
	}
	fg := newFaultGossip(nt, s.blocks)
	ip, port, err := fg.FinalAdvertiseAddr("", 0)
	if err != nil {
		_ = fg.Shutdown()
		return err
	}
	s.self = net.JoinHostPort(ip.String(), strconv.Itoa(port))

	g, err := gossip.New(gossip.Config{
		NodeID: f.id, DataAddr: tr.Addr(), Transport: fg, Profile: gossip.Profile(f.profile), Logger: log,
		SecretKeys: gossipKeys, Signer: creds,
	})
	if err != nil {
		_ = fg.Shutdown()
		return err
	}
	s.gossip = g
	defer func() { err = errors.Join(err, g.Close()) }()

	ln, err := net.Listen("tcp", f.ctl)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if serr := srv.Shutdown(sctx); serr != nil {
			err = errors.Join(err, fmt.Errorf("http shutdown: %w", serr))
		}
		<-served
	}()
	fmt.Fprintf(stdout, "listening ctl=%s data=%s gossip=%s pid=%d\n", ln.Addr(), tr.Addr(), s.self, os.Getpid())

	if err := s.joinAtStart(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // SIGTERM while joining: a clean stop
		}
		return err
	}
	cfg := dynamo.DefaultConfig()
	cfg.NodeID = f.id
	cfg.Transport = &faultTransport{Transport: tr, blocks: s.blocks}
	cfg.Membership = g
	cfg.Logger = log
	cfg.RequestTimeout = f.requestTimeout
	cfg.ReplicaTimeout = f.replicaTimeout
	cfg.Partitions = f.partitions
	if f.mode == "lww" {
		cfg.Resolver = dynamo.Latest
	}
	cfg.Secrets = [][]byte{testSecret}
	n, err := dynamo.Open(ctx, f.data, dynamo.NodeConfig{Config: cfg})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, n.Close()) }()
	s.node.Store(n)
	log.Info("ready", "actor", n.Actor(), "members", len(g.Members()))
	fmt.Fprintf(stdout, "ready ctl=%s data=%s gossip=%s actor=%s\n", ln.Addr(), tr.Addr(), s.self, n.Actor())

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	if f.rejoin > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.rejoinLoop(ctx)
		}()
	}

	select {
	case <-ctx.Done():
		log.Info("stopping")
		return nil
	case err := <-served:
		return fmt.Errorf("http: %w", err)
	}
}

// seeds returns the gossip addresses of the peers, all of them or only those
// whose IDs are in ids.
func (s *nodeServer) seeds(ids map[string]bool) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, addr := range s.peers {
		if id != s.f.id && addr != s.self && (ids == nil || ids[id]) {
			out = append(out, addr)
		}
	}
	slices.Sort(out)
	return out
}

// joinAtStart joins the cluster through the peers, retrying until one
// answers (a restarted node may start inside a partition) or ctx ends. With
// no peers this node starts the cluster. The store opens only after a join,
// so it never serves with a ring of one.
func (s *nodeServer) joinAtStart(ctx context.Context) error {
	const maxAttempts = 100000 // bounded; in practice ctx ends long before
	retry := time.NewTicker(300 * time.Millisecond)
	defer retry.Stop()
	for attempt := 0; attempt < maxAttempts; attempt++ {
		seeds := s.seeds(nil)
		if len(seeds) == 0 {
			return nil
		}
		jctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		n, err := s.gossip.Join(jctx, seeds...)
		cancel()
		if err == nil && n > 0 {
			s.log.Info("joined", "seeds", seeds, "answered", n)
			return nil
		}
		if attempt%10 == 0 {
			s.log.Warn("join failed; retrying", "seeds", seeds, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-retry.C:
		}
	}
	return fmt.Errorf("no peer answered after %d joins", maxAttempts)
}

// rejoinLoop rejoins, through their gossip addresses, the ring members the
// failure detector holds dead. memberlist forgets a dead node after
// GossipToTheDeadTime and never contacts it again, so without this the two
// sides of a healed partition would stay apart; an application embedding
// the library has to do the same (Serf's reconnect does it for Consul).
func (s *nodeServer) rejoinLoop(ctx context.Context) {
	tick := time.NewTicker(s.f.rejoin)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		dead := map[string]bool{}
		for _, m := range s.gossip.Members() {
			if m.ID != s.f.id && !s.gossip.Reachable(m.ID) {
				dead[m.ID] = true
			}
		}
		seeds := s.seeds(dead)
		if len(seeds) == 0 {
			continue
		}
		jctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		n, err := s.gossip.Join(jctx, seeds...)
		cancel()
		if err == nil && n > 0 {
			s.log.Info("rejoined", "seeds", seeds, "answered", n)
		}
	}
}

// handler returns the HTTP API:
//
//	POST /partition        body {"block":["addr",...]}: block exactly these peer addresses
//	POST /heal             block nothing
//	POST /peers            body {"id":"gossipaddr",...}: the peers to join and rejoin
//	GET  /health           the node's view: members, reachability, transfers, drops
//	POST /add?key=K&elem=E Modify: add E to the set K (200 only when acknowledged)
//	POST /delete?key=K     Get, then Delete with its context; reports what it covered
//	GET  /read?key=K&r=N   Get: every sibling, the union of their elements
//	GET  /local?key=K      LocalGet: this node's replica, and whether it is a primary
//
// Values are msgpack []int64: the set's elements (positive) and one negative
// marker naming the write that produced the value (its writer ID).
func (s *nodeServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /partition", s.partition)
	mux.HandleFunc("POST /heal", s.heal)
	mux.HandleFunc("POST /peers", s.setPeers)
	mux.HandleFunc("GET /health", s.health)
	mux.HandleFunc("POST /add", s.add)
	mux.HandleFunc("POST /delete", s.del)
	mux.HandleFunc("GET /read", s.read)
	mux.HandleFunc("GET /local", s.local)
	return mux
}

type partitionRequest struct {
	Block []string `json:"block"`
}

func (s *nodeServer) partition(w http.ResponseWriter, r *http.Request) {
	var req partitionRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, errorReply{Error: err.Error()})
		return
	}
	s.blocks.set(req.Block)
	s.log.Info("partition", "block", req.Block)
	writeJSON(w, http.StatusOK, partitionRequest{Block: s.blocks.list()})
}

func (s *nodeServer) heal(w http.ResponseWriter, _ *http.Request) {
	s.blocks.set(nil)
	s.log.Info("heal")
	writeJSON(w, http.StatusOK, partitionRequest{Block: []string{}})
}

func (s *nodeServer) setPeers(w http.ResponseWriter, r *http.Request) {
	var peers map[string]string
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&peers); err != nil {
		writeJSON(w, http.StatusBadRequest, errorReply{Error: err.Error()})
		return
	}
	s.mu.Lock()
	s.peers = peers
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// healthReply is a node's view of the cluster.
type healthReply struct {
	ID               string          `json:"id"`
	Ready            bool            `json:"ready"`
	Actor            string          `json:"actor,omitempty"`
	Members          map[string]bool `json:"members"` // id -> reachable
	PendingTransfers int             `json:"pending_transfers"`
	Blocked          []string        `json:"blocked"`
	Dropped          int64           `json:"dropped"`
	Stats            *dynamo.Stats   `json:"stats,omitempty"`
}

func (s *nodeServer) health(w http.ResponseWriter, _ *http.Request) {
	rep := healthReply{ID: s.f.id, Members: map[string]bool{}, Blocked: s.blocks.list(), Dropped: s.blocks.dropped.Load()}
	for _, m := range s.gossip.Members() {
		rep.Members[m.ID] = m.ID == s.f.id || s.gossip.Reachable(m.ID)
	}
	if n := s.node.Load(); n != nil {
		st := n.Stats()
		rep.Ready, rep.Actor, rep.PendingTransfers, rep.Stats = true, n.Actor(), st.PendingTransfers, &st
	}
	writeJSON(w, http.StatusOK, rep)
}

// store returns the node, or answers 503 and nil while it is starting.
func (s *nodeServer) store(w http.ResponseWriter) *dynamo.Node {
	n := s.node.Load()
	if n == nil {
		writeJSON(w, http.StatusServiceUnavailable, errorReply{Error: "node is starting"})
	}
	return n
}
