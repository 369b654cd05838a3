// story.go: the paper's shopping cart (§4.4, §6.1) told on a 3-node cluster in one process: a cut, concurrent adds, siblings, a union merge, a resurfacing delete, then removals that hold on an OR-set (orset_story.go).

package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/auth"
	"github.com/dynamo-kv/dynamo/membership/gossip"
	"github.com/dynamo-kv/dynamo/transport/tcp"
)

// cartCodec and union are the cart's encoding and merge: a cart is a sorted
// set of item names, and concurrent carts merge by set union.
var cartCodec = dynamo.MsgpackCodec[[]string]{}

func union(carts [][]string) ([]string, error) { return dynamo.Union(carts) }

// addItem returns a Modify function that adds item to the cart.
func addItem(item string) func([]string, bool) ([]string, error) {
	return func(cart []string, _ bool) ([]string, error) { return union([][]string{cart, {item}}) }
}

// removeItem returns a Modify function that removes item from the cart.
func removeItem(item string) func([]string, bool) ([]string, error) {
	return func(cart []string, _ bool) ([]string, error) {
		return slices.DeleteFunc(slices.Clone(cart), func(s string) bool { return s == item }), nil
	}
}

// storyNode is one node of the in-process cluster and the transport it runs
// on, which the story owns because it wraps it to cut the node off.
type storyNode struct {
	name string
	tcp  *tcp.Transport
	cut  *cutTransport
	*dynamo.Node
}

// storyTimeout bounds the whole story; it normally takes well under a second.
const storyTimeout = 30 * time.Second

// runStory starts a 3-node cluster on loopback, tells the cart story on w,
// and closes the cluster. The text it writes is the same on every run.
func runStory(w io.Writer) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), storyTimeout)
	defer cancel()
	root, err := os.MkdirTemp("", "shoppingcart-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(root)) }()

	nodes, err := startStoryCluster(ctx, root, []string{"node-a", "node-b", "node-c"})
	if err != nil {
		return errors.Join(err, closeStoryCluster(nodes))
	}
	t := &teller{w: w}
	err = tellStory(ctx, t, nodes)
	if err = errors.Join(err, closeStoryCluster(nodes)); err != nil {
		return err
	}
	t.step("Closed all nodes.")
	return t.err
}

// startStoryCluster opens one node per name, each in its own directory under
// root, the first starting the cluster and the others joining its gossip
// address, and waits until every node's ring holds them all. On error it
// returns the nodes it started, for the caller to close.
func startStoryCluster(ctx context.Context, root string, names []string) ([]*storyNode, error) {
	var nodes []*storyNode
	var seeds []string
	// A fresh cluster secret for this run: it authenticates and encrypts
	// the data port (the TLS the story gives its transports) and gossip
	// (which Open derives from NodeConfig.Secrets).
	secret := make([]byte, 32)
	_, _ = rand.Read(secret) // crypto/rand.Read never fails
	for _, name := range names {
		creds, err := auth.FromSecrets(dynamo.DefaultCluster, name, auth.Secrets{secret})
		if err != nil {
			return nodes, err
		}
		tr, err := tcp.Listen("127.0.0.1:0", tcp.Options{TLS: creds.TLSConfig(), Identify: creds.PeerNodeID})
		if err != nil {
			return nodes, err
		}
		cut := newCutTransport(tr)
		cfg := dynamo.DefaultConfig() // N=3, R=2, W=2
		cfg.NodeID = name
		cfg.Secrets = [][]byte{secret} // contexts and gossip
		cfg.Transport = cut            // Open builds bolt and gossip, and no TCP of its own
		// The cut fails calls at once, so no step waits on these; they
		// leave room for a first TLS handshake on a loaded machine.
		cfg.ReplicaTimeout, cfg.RequestTimeout = 5*time.Second, 10*time.Second
		n, err := dynamo.Open(ctx, filepath.Join(root, name), dynamo.NodeConfig{
			Config:        cfg,
			GossipListen:  "127.0.0.1:0",
			Seeds:         seeds,
			GossipProfile: gossip.ProfileLocal,
		})
		if err != nil {
			return nodes, errors.Join(err, tr.Close())
		}
		nodes = append(nodes, &storyNode{name: name, tcp: tr, cut: cut, Node: n})
		if seeds == nil {
			seeds = []string{n.GossipAddr()}
		}
	}
	// A node's ring holds every member once a preference list is as long
	// as the cluster.
	probe := []byte("probe")
	err := waitFor(ctx, func() bool {
		for _, n := range nodes {
			if len(n.PreferenceList(probe, len(names))) < len(names) {
				return false
			}
		}
		return true
	})
	if err != nil {
		return nodes, fmt.Errorf("waiting for %d members on every node: %w", len(names), err)
	}
	// Serve through a node once it has pulled its share of the data.
	for _, n := range nodes {
		if err := n.WaitReady(ctx); err != nil {
			return nodes, err
		}
	}
	return nodes, nil
}

// closeStoryCluster closes every node, then the transports the story owns.
func closeStoryCluster(nodes []*storyNode) error {
	var errs []error
	for _, n := range nodes {
		errs = append(errs, n.Close())
	}
	for _, n := range nodes {
		errs = append(errs, n.tcp.Close())
	}
	return errors.Join(errs...)
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// teller numbers the story's lines and keeps the first write error.
type teller struct {
	w   io.Writer
	n   int
	err error
}

func (t *teller) step(format string, args ...any) {
	t.n++
	t.printf("%d. "+format+"\n", append([]any{t.n}, args...)...)
}

func (t *teller) detail(format string, args ...any) { t.printf("     "+format+"\n", args...) }

func (t *teller) printf(format string, args ...any) {
	if t.err == nil {
		_, t.err = fmt.Fprintf(t.w, format, args...)
	}
}

// cartText prints a cart as [a b c].
func cartText(cart []string) string { return "[" + strings.Join(cart, " ") + "]" }

// siblingCarts decodes each sibling's cart and sorts them by their text, so
// the story prints them in the same order on every run.
func siblingCarts(sibs []dynamo.Sibling) ([]string, error) {
	var out []string
	for _, s := range sibs {
		cart, err := cartCodec.Unmarshal(s.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, cartText(cart))
	}
	slices.Sort(out)
	return out, nil
}

// tellStory is the cart story proper, on nodes a, b and c.
func tellStory(ctx context.Context, t *teller, nodes []*storyNode) error {
	a, b, c := nodes[0], nodes[1], nodes[2]
	key := []byte("cart:alice")
	t.step("Started 3 nodes in this process (%s, %s, %s), TCP and gossip on 127.0.0.1: N=3, R=2, W=2.", a.name, b.name, c.name)

	cart, err := dynamo.Modify(ctx, a.Store, key, cartCodec, union, addItem("book"), dynamo.WithW(3))
	if err != nil {
		return fmt.Errorf("alice adds book: %w", err)
	}
	t.step("Alice adds \"book\" through %s (Modify with dynamo.Union, W=3 so every replica holds it): cart = %s", a.name, cartText(cart))

	for _, n := range nodes {
		if n != c {
			n.cut.block(c.tcp.Addr())
		}
	}
	c.cut.isolate()
	t.step("The network cuts %s off: %s and %s cannot call it, and it cannot call them. Gossip still holds %s alive, so every call across the cut fails at once.", c.name, a.name, b.name, c.name)

	before, _, err := a.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("shopper 1 reads: %w", err)
	}
	seen, err := siblingCarts(before)
	if err != nil {
		return err
	}
	if _, err := dynamo.Modify(ctx, a.Store, key, cartCodec, union, addItem("pen")); err != nil {
		return fmt.Errorf("shopper 1 adds pen: %w", err)
	}
	t.step("Shopper 1, on %s (majority side), reads %s and adds \"pen\" with R=2, W=2: %s and %s acknowledge it.", a.name, strings.Join(seen, " "), a.name, b.name)

	_, err = dynamo.Modify(ctx, c.Store, key, cartCodec, union, addItem("lamp"), dynamo.WithRetries(0))
	if !errors.Is(err, dynamo.ErrReadQuorum) {
		return fmt.Errorf("shopper 2 with R=2 on the cut-off node: got %v, want a read quorum error", err)
	}
	t.step("Shopper 2, on %s (cut off), tries the same with R=2: the read quorum is not met, and nothing is written.", c.name)

	before, _, err = c.Get(ctx, key, dynamo.WithR(1))
	if err != nil {
		return fmt.Errorf("shopper 2 reads with R=1: %w", err)
	}
	if seen, err = siblingCarts(before); err != nil {
		return err
	}
	cart, err = dynamo.Modify(ctx, c.Store, key, cartCodec, union, addItem("lamp"), dynamo.WithR(1), dynamo.WithW(1))
	if err != nil {
		return fmt.Errorf("shopper 2 with R=1, W=1: %w", err)
	}
	t.step("Shopper 2 writes with R=1 and W=1 instead, the paper's \"always writeable\" cart: %s alone reads %s and stores %s.", c.name, strings.Join(seen, " "), cartText(cart))

	for _, n := range nodes {
		n.cut.heal()
	}
	t.step("The cut heals.")

	sibs, _, err := a.Get(ctx, key, dynamo.WithR(3))
	if err != nil {
		return fmt.Errorf("read after heal: %w", err)
	}
	carts, err := siblingCarts(sibs)
	if err != nil {
		return err
	}
	t.step("Get with R=3 and no resolver, through %s, returns %d siblings:", a.name, len(sibs))
	for _, s := range carts {
		t.detail("sibling: %s", s)
	}
	if len(sibs) != 2 {
		return fmt.Errorf("after the heal: %d siblings, want 2", len(sibs))
	}

	merged, err := dynamo.Modify(ctx, b.Store, key, cartCodec, union, keep, dynamo.WithR(3))
	if err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	t.step("Modify with dynamo.Union, through %s, reads all 3 replicas, merges the siblings and writes back with their context: cart = %s. Nothing is lost.", b.name, cartText(merged))
	if !slices.Equal(merged, []string{"book", "lamp", "pen"}) {
		return fmt.Errorf("merged cart %v, want [book lamp pen]", merged)
	}

	sibs, read, err := a.Get(ctx, key, dynamo.WithR(3))
	if err != nil {
		return fmt.Errorf("read after merge: %w", err)
	}
	carts, err = siblingCarts(sibs)
	if err != nil {
		return err
	}
	t.step("Get with R=3 now returns %d version: %s", len(sibs), strings.Join(carts, " "))

	// Two writes from one context are concurrent: neither covers the other.
	removed, _ := removeItem("book")(merged, true)
	added, _ := addItem("cup")(merged, true)
	if err := putCart(ctx, a, key, removed, read); err != nil {
		return fmt.Errorf("shopper 1 removes book: %w", err)
	}
	if err := putCart(ctx, b, key, added, read); err != nil {
		return fmt.Errorf("shopper 2 adds cup: %w", err)
	}
	t.step("Now deletes. Shopper 1 removes \"book\" through %s; shopper 2 adds \"cup\" through %s, from the same read. Neither write saw the other: they are concurrent.", a.name, b.name)

	sibs, _, err = c.Get(ctx, key, dynamo.WithR(3))
	if err != nil {
		return fmt.Errorf("read after the delete: %w", err)
	}
	carts, err = siblingCarts(sibs)
	if err != nil {
		return err
	}
	t.step("Get with R=3, through %s, returns %d siblings:", c.name, len(sibs))
	for _, s := range carts {
		t.detail("sibling: %s", s)
	}

	merged, err = dynamo.Modify(ctx, c.Store, key, cartCodec, union, keep, dynamo.WithR(3))
	if err != nil {
		return fmt.Errorf("merge after the delete: %w", err)
	}
	if !slices.Contains(merged, "book") {
		return fmt.Errorf("merged cart %v: want book to resurface", merged)
	}
	t.step("Modify with dynamo.Union merges them: cart = %s. The removed \"book\" is back.", cartText(merged))
	t.step("This is the paper's \"deleted items can resurface\" behaviour (§4.4): the union of concurrent siblings keeps every item that any sibling holds, and a sibling without \"book\" cannot say whether it was removed or never added.")
	return tellORSetStory(ctx, t, nodes)
}

// keep is a Modify function that writes back the merged cart unchanged.
func keep(cart []string, _ bool) ([]string, error) { return cart, nil }

// putCart writes cart to key through n with the context c.
func putCart(ctx context.Context, n *storyNode, key []byte, cart []string, c dynamo.Context) error {
	b, err := cartCodec.Marshal(cart)
	if err != nil {
		return err
	}
	return n.Put(ctx, key, b, c)
}
