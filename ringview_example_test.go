// ringview_example_test.go: a runnable example of Store.Ring (§4.2, §4.8).
package dynamo_test

import "fmt"

// A node's view of the ring: how many of the 64 partitions each node
// coordinates as their first primary, and holds as one of their N=3
// replicas, and whether this node holds it reachable.
func ExampleStore_Ring() {
	nodes, stop := startCluster(nil)
	defer stop()
	v := nodes[0].Ring()
	fmt.Printf("%d partitions, N=%d\n", v.Partitions, v.N)
	first := 0
	for _, n := range v.Nodes {
		fmt.Printf("%s self=%v replica=%d reachable=%v\n", n.ID, n.Self, n.Replica, n.Reachable)
		first += n.First
	}
	fmt.Println("first primaries:", first)
	// Output:
	// 64 partitions, N=3
	// a self=true replica=64 reachable=true
	// b self=false replica=64 reachable=true
	// c self=false replica=64 reachable=true
	// first primaries: 64
}
