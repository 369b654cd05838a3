// server.go: one node of a multi-process cart cluster and its HTTP API: carts merged by union (§6.1), raw sibling access, and the node's view (§4.8).

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/admin"
	"github.com/dynamo-kv/dynamo/auth"
	"github.com/dynamo-kv/dynamo/membership/gossip"
	"github.com/dynamo-kv/dynamo/metrics/prom"
	"github.com/dynamo-kv/dynamo/transport/tcp"
)

// shutdownTimeout bounds draining HTTP requests and, with -leave-on-exit,
// announcing the leave.
const shutdownTimeout = 5 * time.Second

// runNode runs one node until ctx ends: TCP for peers, memberlist gossip,
// bbolt in f.data (through dynamo.Open), and the HTTP API. It prints
// "ready http=ADDR gossip=ADDR data=ADDR" on stdout once serving.
//
// The node builds its own TCP transport and gossip, and lets Open build only
// the storage, so that /healthz can report the gossip view: a dynamo.Node does
// not expose its Membership.
func runNode(ctx context.Context, f nodeFlags, stdout, stderr io.Writer) (err error) {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	secrets, topts, gossipKeys, signer, err := f.security()
	if err != nil {
		return err
	}
	topts.Logger = log
	tr, err := tcp.Listen(f.listen, topts)
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, tr.Close())
		log.Info("stopped", "err", err)
	}()

	var seeds []string
	for s := range strings.SplitSeq(f.join, ",") {
		if s = strings.TrimSpace(s); s != "" {
			seeds = append(seeds, s)
		}
	}
	g, err := gossip.Join(ctx, gossip.Config{
		NodeID: f.id, BindAddr: f.gossip, DataAddr: tr.Addr(), Seeds: seeds, Profile: f.profile, Logger: log, Zone: f.zone,
		SecretKeys: gossipKeys, Signer: signer,
	})
	if err != nil {
		return err
	}
	leave := false
	defer func() {
		if leave {
			err = errors.Join(err, g.Leave(shutdownTimeout))
		} else {
			err = errors.Join(err, g.Close())
		}
	}()

	cfg := dynamo.DefaultConfig()
	cfg.NodeID = f.id
	cfg.Transport = tr
	cfg.Membership = g
	cfg.Logger = log
	cfg.Secrets = secrets
	n, err := dynamo.Open(ctx, f.data, dynamo.NodeConfig{Config: cfg, Insecure: f.insecure})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, n.Close()) }()

	ln, err := net.Listen("tcp", f.http)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: newAPI(n, g),
		// The API is unauthenticated (see README.md), and these bound what
		// a slow or idle client holds: a request's header, its whole body
		// (at most maxBody), writing the reply, and a kept-alive
		// connection between requests.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("serving", "http", ln.Addr().String(), "gossip", g.GossipAddr(), "data", tr.Addr(), "members", len(g.Members()))
	fmt.Fprintf(stdout, "ready http=%s gossip=%s data=%s\n", ln.Addr(), g.GossipAddr(), tr.Addr())

	select {
	case <-ctx.Done():
		log.Info("stopping", "leave", f.leaveOnExit)
	case err := <-served:
		return fmt.Errorf("http: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	<-served
	leave = f.leaveOnExit
	if leave {
		// Hand every partition to the owners that take over before announcing the leave.
		if err := n.Decommission(sctx); err != nil {
			log.Warn("decommission incomplete; leaving anyway", "err", err)
		}
	}
	return nil
}

// security reads the cluster secret of -secret-file, and returns it with
// the TLS it gives the data port, and the keys and the record signer it
// gives gossip; with -insecure, none of them.
func (f nodeFlags) security() (secrets [][]byte, opts tcp.Options, gossipKeys [][]byte, signer gossip.Signer, err error) {
	if f.insecure {
		return nil, tcp.Options{}, nil, nil, nil
	}
	secret, err := os.ReadFile(f.secretFile)
	if err != nil {
		return nil, tcp.Options{}, nil, nil, fmt.Errorf("read the cluster secret: %w", err)
	}
	secrets = [][]byte{bytes.TrimSpace(secret)}
	creds, err := auth.FromSecrets(dynamo.DefaultCluster, f.id, secrets)
	if err != nil {
		return nil, tcp.Options{}, nil, nil, fmt.Errorf("cluster secret in %s: %w", f.secretFile, err)
	}
	if gossipKeys, err = auth.Secrets(secrets).GossipKeys(dynamo.DefaultCluster); err != nil {
		return nil, tcp.Options{}, nil, nil, err
	}
	return secrets, tcp.Options{TLS: creds.TLSConfig(), Identify: creds.PeerNodeID}, gossipKeys, creds, nil
}

// api serves the HTTP API of one node.
type api struct {
	node   *dynamo.Node
	gossip *gossip.Gossip
}

// newAPI returns the node's HTTP handler:
//
//	POST   /cart/{user}/items/{item}  add an item (Modify with dynamo.Union)
//	DELETE /cart/{user}/items/{item}  remove an item (Modify)
//	GET    /cart/{user}?r=N           {"items":[...],"siblings":N,"context":"..."}
//	PUT    /kv/{key}?context=C&w=N    store the request body as key's value
//	GET    /kv/{key}?r=N              {"siblings":[base64...],"context":"..."}
//	GET    /local/{key}               {"siblings":[base64...]}: this node's own copy
//	GET    /pref/{key}?n=N            {"ids":[...]}: key's preference list, best first
//	GET    /healthz                   the node's view of the ring
//	GET    /readyz                    200 once the node pulled what it missed, 503 before
//	GET    /admin/                    the admin dashboard; /admin/status, /members, /ring,
//	                                  /hints and /stats serve JSON (package admin, dynamoctl)
//	GET    /metrics                   Prometheus metrics (package metrics/prom)
//
// Cart writes take ?r= and ?w= too. Errors are {"error":"..."}, with 503
// when a quorum was not met.
func newAPI(n *dynamo.Node, g *gossip.Gossip) http.Handler {
	a := &api{node: n, gossip: g}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cart/{user}/items/{item}", a.addItem)
	mux.HandleFunc("DELETE /cart/{user}/items/{item}", a.removeItem)
	mux.HandleFunc("GET /cart/{user}", a.getCart)
	mux.HandleFunc("PUT /kv/{key...}", a.putKV)
	mux.HandleFunc("GET /kv/{key...}", a.getKV)
	mux.HandleFunc("GET /local/{key...}", a.getLocal)
	mux.HandleFunc("GET /pref/{key...}", a.getPref)
	mux.HandleFunc("GET /healthz", a.health)
	mux.HandleFunc("GET /readyz", a.ready)
	mux.Handle("/admin/", http.StripPrefix("/admin", admin.Handler(n.Store)))
	reg := prometheus.NewRegistry()
	reg.MustRegister(prom.New(n.Store), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

func cartKey(r *http.Request) []byte { return []byte("cart:" + r.PathValue("user")) }

// cartReply is the body of the cart endpoints.
type cartReply struct {
	Items    []string `json:"items"`
	Siblings int      `json:"siblings"`
	Context  string   `json:"context,omitempty"`
}

func (a *api) addItem(w http.ResponseWriter, r *http.Request) {
	a.modifyCart(w, r, addItem(r.PathValue("item")))
}

func (a *api) removeItem(w http.ResponseWriter, r *http.Request) {
	a.modifyCart(w, r, removeItem(r.PathValue("item")))
}

func (a *api) modifyCart(w http.ResponseWriter, r *http.Request, fn func([]string, bool) ([]string, error)) {
	opts, err := quorumOptions(r)
	if err != nil {
		writeError(w, err)
		return
	}
	cart, err := dynamo.Modify(r.Context(), a.node.Store, cartKey(r), cartCodec, union, fn, opts...)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, cartReply{Items: nonNil(cart)})
}

func (a *api) getCart(w http.ResponseWriter, r *http.Request) {
	opts, err := quorumOptions(r)
	if err != nil {
		writeError(w, err)
		return
	}
	sibs, c, err := a.node.Get(r.Context(), cartKey(r), opts...)
	if err != nil {
		writeError(w, err)
		return
	}
	carts := make([][]string, 0, len(sibs))
	for _, s := range sibs {
		cart, err := cartCodec.Unmarshal(s.Value)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, errorReply{Error: fmt.Sprintf("a sibling is not a cart: %v", err)})
			return
		}
		carts = append(carts, cart)
	}
	items, _ := union(carts)
	writeJSON(w, http.StatusOK, cartReply{Items: nonNil(items), Siblings: len(sibs), Context: c.String()})
}

// kvReply is the body of GET /kv/{key}; Siblings encode as base64.
type kvReply struct {
	Siblings [][]byte `json:"siblings"`
	Context  string   `json:"context"`
}

func (a *api) getKV(w http.ResponseWriter, r *http.Request) {
	opts, err := quorumOptions(r)
	if err != nil {
		writeError(w, err)
		return
	}
	sibs, c, err := a.node.Get(r.Context(), []byte(r.PathValue("key")), opts...)
	if err != nil {
		writeError(w, err)
		return
	}
	rep := kvReply{Siblings: make([][]byte, 0, len(sibs)), Context: c.String()}
	for _, s := range sibs {
		rep.Siblings = append(rep.Siblings, s.Value)
	}
	writeJSON(w, http.StatusOK, rep)
}

// localReply is the body of GET /local/{key}; Siblings encode as base64.
type localReply struct {
	Siblings [][]byte `json:"siblings"`
}

// getLocal answers with the live siblings this node alone holds for key, in
// its replica and in hints it keeps for others (Store.LocalGet): no peer is
// asked and nothing is repaired, so tests can look at one replica.
func (a *api) getLocal(w http.ResponseWriter, r *http.Request) {
	sibs, err := a.node.LocalGet([]byte(r.PathValue("key")))
	if err != nil {
		writeError(w, err)
		return
	}
	rep := localReply{Siblings: make([][]byte, 0, len(sibs))}
	for _, s := range sibs {
		rep.Siblings = append(rep.Siblings, s.Value)
	}
	writeJSON(w, http.StatusOK, rep)
}

// prefReply is the body of GET /pref/{key}: node IDs, best first, and
// their zones in the same order.
type prefReply struct {
	IDs   []string `json:"ids"`
	Zones []string `json:"zones"`
}

// getPref answers with the first n (?n=, default N) nodes of key's
// preference list in this node's ring: its N replicas, then its fallbacks.
func (a *api) getPref(w http.ResponseWriter, r *http.Request) {
	key := []byte(r.PathValue("key"))
	if len(key) == 0 {
		writeError(w, dynamo.ErrEmptyKey)
		return
	}
	n := dynamo.DefaultN
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			writeError(w, fmt.Errorf("%w: n=%q is not a positive number", dynamo.ErrBadOption, v))
			return
		}
	}
	rep := prefReply{IDs: []string{}, Zones: []string{}}
	for _, m := range a.node.PreferenceList(key, n) {
		rep.IDs = append(rep.IDs, m.ID)
		rep.Zones = append(rep.Zones, m.Zone)
	}
	writeJSON(w, http.StatusOK, rep)
}

// maxBody bounds a PUT body: the library's default MaxValueSize.
const maxBody = 1 << 20

func (a *api) putKV(w http.ResponseWriter, r *http.Request) {
	opts, err := quorumOptions(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var c dynamo.Context
	if err := c.UnmarshalText([]byte(r.URL.Query().Get("context"))); err != nil {
		writeError(w, err)
		return
	}
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, errorReply{Error: err.Error()})
		return
	}
	if err := a.node.Put(r.Context(), []byte(r.PathValue("key")), value, c, opts...); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// healthReply is the node's view: its identity, every ring member with
// whether the failure detector holds it reachable, and background counters.
type healthReply struct {
	ID         string         `json:"id"`
	Actor      string         `json:"actor"`
	Ready      bool           `json:"ready"` // the node pulled what it missed (dynamo.Store.Ready)
	Gossip     string         `json:"gossip"`
	Members    []memberHealth `json:"members"`
	Stats      dynamo.Stats   `json:"stats"`
	Goroutines int            `json:"goroutines"`
}

type memberHealth struct {
	ID        string `json:"id"`
	Addr      string `json:"addr"`
	Zone      string `json:"zone,omitempty"`
	Reachable bool   `json:"reachable"`
}

func (a *api) health(w http.ResponseWriter, _ *http.Request) {
	rep := healthReply{ID: a.gossip.ID(), Actor: a.node.Actor(), Gossip: a.gossip.GossipAddr(), Stats: a.node.Stats(), Goroutines: runtime.NumGoroutine()}
	select {
	case <-a.node.Ready():
		rep.Ready = true
	default:
	}
	for _, m := range a.gossip.Members() {
		rep.Members = append(rep.Members, memberHealth{ID: m.ID, Addr: m.Addr, Zone: m.Zone, Reachable: m.ID == rep.ID || a.gossip.Reachable(m.ID)})
	}
	writeJSON(w, http.StatusOK, rep)
}

// ready answers 200 once the node has pulled what it missed while it was
// down (dynamo.Store.Ready), 503 until then: a load balancer's readiness
// probe.
func (a *api) ready(w http.ResponseWriter, _ *http.Request) {
	select {
	case <-a.node.Ready():
		writeJSON(w, http.StatusOK, map[string]int{"pending_transfers": 0})
	default:
		writeJSON(w, http.StatusServiceUnavailable, map[string]int{"pending_transfers": a.node.PendingTransfers()})
	}
}

// quorumOptions reads ?r= and ?w= as per-request options.
func quorumOptions(r *http.Request) ([]dynamo.Option, error) {
	var opts []dynamo.Option
	for _, p := range []struct {
		name string
		opt  func(int) dynamo.Option
	}{{"r", dynamo.WithR}, {"w", dynamo.WithW}} {
		v := r.URL.Query().Get(p.name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %s=%q is not a number", dynamo.ErrBadOption, p.name, v)
		}
		opts = append(opts, p.opt(n))
	}
	return opts, nil
}

type errorReply struct {
	Error string `json:"error"`
}

// writeError answers with err and the status its kind calls for.
func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, dynamo.ErrBadOption), errors.Is(err, dynamo.ErrBadContext), errors.Is(err, dynamo.ErrEmptyKey),
		errors.Is(err, dynamo.ErrKeyTooLarge), errors.Is(err, dynamo.ErrValueTooLarge):
		status = http.StatusBadRequest
	case errors.Is(err, dynamo.ErrTooManySiblings):
		status = http.StatusConflict
	case errors.Is(err, dynamo.ErrReadQuorum), errors.Is(err, dynamo.ErrWriteQuorum), errors.Is(err, dynamo.ErrNoReplica),
		errors.Is(err, dynamo.ErrClosed), errors.Is(err, context.DeadlineExceeded):
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, errorReply{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func nonNil(items []string) []string {
	if items == nil {
		return []string{}
	}
	return items
}
