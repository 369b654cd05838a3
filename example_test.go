// example_test.go: runnable examples of the public API.
package dynamo_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/storage/memory"
	"github.com/dynamo-kv/dynamo/transport/memnet"
)

// startCluster starts three nodes on an in-memory network. A service would use
// transport/tcp and storage/bolt instead.
func startCluster(mut func(*dynamo.Config)) (nodes []*dynamo.Store, stop func()) {
	net := memnet.New(memnet.Options{})
	members := []dynamo.Member{{ID: "a", Addr: "a"}, {ID: "b", Addr: "b"}, {ID: "c", Addr: "c"}}
	var closers []func() error
	for _, m := range members {
		tr, _ := net.Listen(m.Addr)
		cfg := dynamo.DefaultConfig() // N=3, R=2, W=2
		cfg.NodeID = m.ID
		cfg.Transport = tr
		cfg.Storage = memory.New()
		cfg.Members = members
		cfg.Partitions = 64
		if mut != nil {
			mut(&cfg)
		}
		s, err := dynamo.New(cfg)
		if err != nil {
			panic(err)
		}
		nodes = append(nodes, s)
		closers = append(closers, s.Close, tr.Close)
	}
	return nodes, func() {
		for _, c := range closers {
			c()
		}
	}
}

func Example() {
	nodes, stop := startCluster(nil)
	defer stop()
	ctx := context.Background()

	if err := nodes[0].Put(ctx, []byte("greeting"), []byte("hello"), dynamo.CausalContext{}); err != nil {
		fmt.Println(err)
		return
	}
	siblings, _, err := nodes[1].Get(ctx, []byte("greeting"))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range siblings {
		fmt.Println(string(s.Value))
	}
	// Output: hello
}

// Two writes from the same context are concurrent: Get returns both as
// siblings, and a write with the context of that Get reconciles them.
func Example_siblings() {
	nodes, stop := startCluster(nil)
	defer stop()
	ctx := context.Background()
	key := []byte("cart")

	_ = nodes[0].Put(ctx, key, []byte("book"), dynamo.CausalContext{})
	_, read, _ := nodes[0].Get(ctx, key)
	_ = nodes[1].Put(ctx, key, []byte("book,pen"), read) // shopper 1
	_ = nodes[2].Put(ctx, key, []byte("book,ink"), read) // shopper 2

	siblings, both, _ := nodes[0].Get(ctx, key, dynamo.WithR(3))
	var vals []string
	for _, s := range siblings {
		vals = append(vals, string(s.Value))
	}
	slices.Sort(vals)
	fmt.Println(vals)

	_ = nodes[0].Put(ctx, key, []byte("book,ink,pen"), both)
	siblings, _, _ = nodes[0].Get(ctx, key, dynamo.WithR(3))
	fmt.Println(len(siblings), string(siblings[0].Value))
	// Output:
	// [book,ink book,pen]
	// 1 book,ink,pen
}

// Modify runs read, merge, modify and write in one call; Union is the
// shopping cart's merge.
func ExampleModify() {
	nodes, stop := startCluster(nil)
	defer stop()
	ctx := context.Background()
	codec := dynamo.MsgpackCodec[[]string]{}
	add := func(s *dynamo.Store, item string) {
		_, err := dynamo.Modify(ctx, s, []byte("cart"), codec, dynamo.Union[string],
			func(cart []string, _ bool) ([]string, error) { return append(cart, item), nil })
		if err != nil {
			fmt.Println(err)
		}
	}
	add(nodes[0], "book")
	add(nodes[1], "pen")
	add(nodes[2], "book")

	cart, _ := dynamo.Modify(ctx, nodes[0], []byte("cart"), codec, dynamo.Union[string],
		func(cart []string, _ bool) ([]string, error) { return dynamo.Union([][]string{cart}) })
	fmt.Println(cart)
	// Output: [book pen]
}

// A Resolver in the Config makes Get return one merged value.
func ExampleResolve() {
	highScore := dynamo.Resolve(dynamo.JSONCodec[int]{}, dynamo.Max[int])
	nodes, stop := startCluster(func(c *dynamo.Config) { c.Resolver = highScore })
	defer stop()
	ctx := context.Background()
	key := []byte("score:alice")
	_ = nodes[0].Put(ctx, key, []byte("310"), dynamo.CausalContext{})
	_ = nodes[1].Put(ctx, key, []byte("970"), dynamo.CausalContext{}) // concurrent: blind write
	_ = nodes[2].Put(ctx, key, []byte("455"), dynamo.CausalContext{})

	siblings, _, _ := nodes[0].Get(ctx, key, dynamo.WithR(3))
	fmt.Println(len(siblings), string(siblings[0].Value))
	// Output: 1 970
}

// A CausalContext travels as text, through forms and cookies.
func ExampleCausalContext_MarshalText() {
	nodes, stop := startCluster(nil)
	defer stop()
	ctx := context.Background()
	_ = nodes[0].Put(ctx, []byte("k"), []byte("v1"), dynamo.CausalContext{})
	_, c, _ := nodes[0].Get(ctx, []byte("k"))
	text, _ := c.MarshalText()

	var back dynamo.CausalContext
	if err := back.UnmarshalText(text); err != nil {
		fmt.Println(err)
	}
	_ = nodes[0].Put(ctx, []byte("k"), []byte("v2"), back)
	siblings, _, _ := nodes[0].Get(ctx, []byte("k"), dynamo.WithR(3))
	fmt.Println(len(siblings), string(siblings[0].Value))
	// Output: 1 v2
}

// With a cluster secret, a context edited in untrusted hands is refused and
// changes nothing.
func ExampleConfig_secrets() {
	secret := []byte("32 random bytes, the same on all") // e.g. from a secret store
	nodes, stop := startCluster(func(cfg *dynamo.Config) { cfg.Secrets = [][]byte{secret} })
	defer stop()
	ctx := context.Background()
	_ = nodes[0].Put(ctx, []byte("k"), []byte("v1"), dynamo.CausalContext{})
	_, c, _ := nodes[0].Get(ctx, []byte("k"))
	text, _ := c.MarshalText()
	if i := len(text) / 2; text[i] == 'A' { // one character edited
		text[i] = 'B'
	} else {
		text[i] = 'A'
	}

	var edited dynamo.CausalContext
	err := edited.UnmarshalText(text) // refused here if the text no longer decodes,
	if err == nil {
		err = nodes[1].Put(ctx, []byte("k"), []byte("v2"), edited) // else here
	}
	fmt.Println(errors.Is(err, dynamo.ErrBadContext))
	siblings, _, _ := nodes[2].Get(ctx, []byte("k"), dynamo.WithR(3))
	fmt.Println(len(siblings), string(siblings[0].Value))
	// Output:
	// true
	// 1 v1
}

// Typed carries the codec and the merge of a kind of value, so each call
// names only the key and the change.
func ExampleTyped() {
	nodes, stop := startCluster(nil)
	defer stop()
	ctx := context.Background()
	carts := dynamo.Typed[[]string]{Store: nodes[0], Codec: dynamo.JSONCodec[[]string]{}, Merge: dynamo.Union[string]}
	for _, item := range []string{"book", "pen"} {
		if _, err := carts.Modify(ctx, []byte("cart:alice"), func(cart []string, _ bool) ([]string, error) {
			return append(cart, item), nil
		}); err != nil {
			fmt.Println(err)
		}
	}
	cart, found, _, err := carts.Get(ctx, []byte("cart:alice"))
	fmt.Println(cart, found, err)
	_, found, _, _ = carts.Get(ctx, []byte("cart:bob"))
	fmt.Println(found)
	// Output:
	// [book pen] true <nil>
	// false
}

// Open starts a node with the embedded defaults: bbolt in a data
// directory, TCP and gossip. One node, and no authentication (Insecure),
// only for a local try-out: a cluster sets Secrets and Seeds.
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "dynamo-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	cfg := dynamo.DefaultConfig()
	cfg.NodeID, cfg.N, cfg.R, cfg.W = "a", 1, 1, 1
	node, err := dynamo.Open(ctx, dir, dynamo.NodeConfig{Config: cfg, Insecure: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()
	if err := node.Put(ctx, []byte("greeting"), []byte("hello"), dynamo.CausalContext{}); err != nil {
		fmt.Println(err)
		return
	}
	siblings, _, err := node.Get(ctx, []byte("greeting"))
	if err != nil || len(siblings) != 1 {
		fmt.Println(len(siblings), err)
		return
	}
	fmt.Println(string(siblings[0].Value))
	// Output: hello
}

// PutReturning chains overwrites without a read: each write supersedes the
// one before it. A version written concurrently by another client is not
// covered by the returned context, so it survives the chain as a sibling.
func ExampleStore_PutReturning() {
	nodes, stop := startCluster(nil)
	defer stop()
	ctx := context.Background()
	key := []byte("counter")

	c := dynamo.CausalContext{}
	for i := range 3 {
		next, err := nodes[i].PutReturning(ctx, key, []byte(fmt.Sprint(i)), c)
		if err != nil {
			fmt.Println(err)
			return
		}
		c = next
	}
	siblings, _, _ := nodes[0].Get(ctx, key, dynamo.WithR(3))
	fmt.Println(len(siblings), string(siblings[0].Value))

	_ = nodes[1].Put(ctx, key, []byte("other"), dynamo.CausalContext{}) // another client, blind
	_, _ = nodes[2].PutReturning(ctx, key, []byte("3"), c)
	siblings, _, _ = nodes[0].Get(ctx, key, dynamo.WithR(3))
	var vals []string
	for _, s := range siblings {
		vals = append(vals, string(s.Value))
	}
	slices.Sort(vals)
	fmt.Println(vals)
	// Output:
	// 1 2
	// [3 other]
}
