// example_metrics_test.go: runnable examples of Metrics and Health.
package dynamo_test

import (
	"context"
	"fmt"

	"github.com/dynamo-kv/dynamo"
)

func ExampleStore_Metrics() {
	nodes, stop := startCluster(nil)
	defer stop()
	ctx := context.Background()

	// Two writes that do not see each other: a read finds two siblings.
	for _, v := range []string{"book", "pen"} {
		if err := nodes[0].Put(ctx, []byte("cart:alice"), []byte(v), dynamo.CausalContext{}); err != nil {
			fmt.Println(err)
			return
		}
	}
	if _, _, err := nodes[0].Get(ctx, []byte("cart:alice")); err != nil {
		fmt.Println(err)
		return
	}

	m := nodes[0].Metrics()
	fmt.Println("puts ok:", m.Count(dynamo.OpPut, dynamo.OutcomeOK))
	fmt.Println("gets ok:", m.Count(dynamo.OpGet, dynamo.OutcomeOK))
	fmt.Println("reads with 2 siblings:", m.Siblings.Counts[2]) // bounds 0, 1, 2, ...
	fmt.Println("bytes read:", m.ReadBytes.Sum)
	fmt.Println("members:", m.Membership.Members, "healthy:", m.Health.Healthy())
	// Output:
	// puts ok: 2
	// gets ok: 1
	// reads with 2 siblings: 1
	// bytes read: 7
	// members: 3 healthy: true
}

func ExampleStore_Err() {
	nodes, stop := startCluster(nil)
	defer stop()
	if err := nodes[0].WaitReady(context.Background()); err != nil { // its first pulls
		fmt.Println(err)
		return
	}
	select {
	case err := <-nodes[0].Err(): // a Storage that failed for good: restart the node
		fmt.Println("fatal:", err)
	default:
		fmt.Println("no fatal error; ready:", nodes[0].Health().Ready)
	}
	// Output:
	// no fatal error; ready: true
}
