// orset_story.go: the cart story's second half (§6.1 with removals): the same concurrent remove and add on a dynamo.ORSet cart, where the removal holds and a concurrent add of the removed item wins.

package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/dynamo-kv/dynamo"
)

// setChange is one shopper's change to an OR-set cart, through a node.
type setChange struct {
	node   *storyNode
	change func(cart *dynamo.ORSet[string])
}

// concurrentUpdates runs the changes at once with dynamo.UpdateSet: each
// reads the cart, then waits until all have read before it writes, so no
// write saw another (they become siblings).
func concurrentUpdates(ctx context.Context, key []byte, changes ...setChange) error {
	var read, done sync.WaitGroup
	read.Add(len(changes))
	errs := make([]error, len(changes))
	for i, c := range changes {
		done.Go(func() {
			_, errs[i] = dynamo.UpdateSet(ctx, c.node.Store, key, func(cart *dynamo.ORSet[string]) error {
				read.Done()
				read.Wait()
				c.change(cart)
				return nil
			}, dynamo.WithRetries(0)) // a retry would read again after the barrier
		})
	}
	done.Wait()
	return errors.Join(errs...)
}

// readORCart reads the cart with R=3 and returns its items and how many
// siblings the key holds.
func readORCart(ctx context.Context, n *storyNode, key []byte) (items []string, siblings int, err error) {
	sibs, _, err := n.Get(ctx, key, dynamo.WithR(3))
	if err != nil {
		return nil, 0, err
	}
	cart, err := dynamo.GetSet[string](ctx, n.Store, key, dynamo.WithR(3))
	if err != nil {
		return nil, 0, err
	}
	return cart.Elements(), len(sibs), nil
}

// tellORSetStory is the story's second half, on nodes a, b and c: the
// removal that union merging undid, on an observed-remove set.
func tellORSetStory(ctx context.Context, t *teller, nodes []*storyNode) error {
	a, b, c := nodes[0], nodes[1], nodes[2]
	key := []byte("cart:bob")
	add := func(items ...string) func(*dynamo.ORSet[string]) {
		return func(cart *dynamo.ORSet[string]) { cart.Add(items...) }
	}
	remove := func(item string) func(*dynamo.ORSet[string]) {
		return func(cart *dynamo.ORSet[string]) { cart.Remove(item) }
	}

	if err := concurrentUpdates(ctx, key, setChange{a, add("book", "lamp", "pen")}); err != nil {
		return fmt.Errorf("bob's cart: %w", err)
	}
	items, _, err := readORCart(ctx, c, key)
	if err != nil {
		return err
	}
	t.step("Now the same with an observed-remove set (dynamo.ORSet, written with dynamo.UpdateSet): Bob's cart holds %s. Each item carries the dots of the writes that added it, which the writes' coordinators minted.", cartText(items))

	err = concurrentUpdates(ctx, key, setChange{a, remove("book")}, setChange{b, add("cup")})
	if err != nil {
		return fmt.Errorf("remove book, add cup: %w", err)
	}
	t.step("Shopper 1 removes \"book\" through %s; shopper 2 adds \"cup\" through %s, from the same read: concurrent again.", a.name, b.name)
	items, sibs, err := readORCart(ctx, c, key)
	if err != nil {
		return err
	}
	t.step("dynamo.GetSet with R=3, through %s, merges the key's %d siblings: cart = %s. The removal holds: shopper 2's sibling still holds \"book\", but only under the add that shopper 1's write saw and dropped.", c.name, sibs, cartText(items))
	if sibs != 2 || !slices.Equal(items, []string{"cup", "lamp", "pen"}) {
		return fmt.Errorf("after remove and add: %v in %d siblings, want [cup lamp pen] in 2", items, sibs)
	}

	err = concurrentUpdates(ctx, key, setChange{a, remove("pen")}, setChange{b, add("pen")})
	if err != nil {
		return fmt.Errorf("remove and add pen: %w", err)
	}
	if items, _, err = readORCart(ctx, c, key); err != nil {
		return err
	}
	t.step("Shopper 1 removes \"pen\" while shopper 2 adds \"pen\" again, concurrently: cart = %s. The concurrent add wins: a removal takes out only the adds it observed.", cartText(items))
	if !slices.Equal(items, []string{"cup", "lamp", "pen"}) {
		return fmt.Errorf("after remove and add of pen: %v, want [cup lamp pen]", items)
	}
	return nil
}
