// crdt_example_test.go: runnable examples of the convergent types: an
// OR-set cart, a counter and a register.
package dynamo_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/dynamo-kv/dynamo"
)

// Two shoppers change one cart at once: one removes the book, the other
// adds a cup. Neither saw the other's write, so they become siblings; the
// merge keeps the removal and the add. (Merged by union, the book would be
// back.)
func ExampleORSet() {
	nodes, stop := startCluster(nil)
	defer stop()
	ctx := context.Background()
	key := []byte("cart:alice")

	_, err := dynamo.UpdateSet(ctx, nodes[0], key, func(cart *dynamo.ORSet[string]) error {
		cart.Add("book", "pen")
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	var read, done sync.WaitGroup
	read.Add(2) // both shoppers read the cart before either writes
	for i, change := range []func(*dynamo.ORSet[string]){
		func(cart *dynamo.ORSet[string]) { cart.Remove("book") },
		func(cart *dynamo.ORSet[string]) { cart.Add("cup") },
	} {
		done.Go(func() {
			_, err := dynamo.UpdateSet(ctx, nodes[1+i], key, func(cart *dynamo.ORSet[string]) error {
				read.Done()
				read.Wait()
				change(cart)
				return nil
			}, dynamo.WithRetries(0))
			if err != nil {
				fmt.Println(err)
			}
		})
	}
	done.Wait()

	cart, err := dynamo.GetSet[string](ctx, nodes[0], key, dynamo.WithR(3))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cart.Elements(), cart.Contains("book"))
	// Output: [cup pen] false
}

// Each node counts page views concurrently; every increment counts once.
func ExampleCounter() {
	nodes, stop := startCluster(nil)
	defer stop()
	ctx := context.Background()
	key := []byte("views:home")

	var wg sync.WaitGroup
	for _, n := range nodes {
		for range 3 {
			wg.Go(func() {
				_, err := dynamo.UpdateCounter(ctx, n, key, func(c *dynamo.Counter) error {
					c.Add(1)
					return nil
				})
				if err != nil {
					fmt.Println(err)
				}
			})
		}
	}
	wg.Wait()
	_, _ = dynamo.UpdateCounter(ctx, nodes[0], key, func(c *dynamo.Counter) error {
		c.Add(-3)
		return nil
	})

	views, err := dynamo.GetCounter(ctx, nodes[2], key, dynamo.WithR(3))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(views.Value())
	// Output: 6
}

// A register holds one value; a write that read it replaces it.
func ExampleRegister() {
	nodes, stop := startCluster(nil)
	defer stop()
	ctx := context.Background()
	key := []byte("leader")
	codec := dynamo.MsgpackCodec[string]{}

	for _, name := range []string{"node-a", "node-b"} {
		_, err := dynamo.UpdateRegister(ctx, nodes[0], key, codec, func(cur dynamo.Register[string]) (string, error) {
			fmt.Printf("was %q (found %t), now %q\n", cur.Value, cur.Found, name)
			return name, nil
		})
		if err != nil {
			fmt.Println(err)
			return
		}
	}
	r, err := dynamo.GetRegister(ctx, nodes[1], key, codec)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Value, r.Found)
	// Output:
	// was "" (found false), now "node-a"
	// was "node-a" (found true), now "node-b"
	// node-b true
}
