// example_zones_test.go: a runnable example of zones (§4.6 replicas across data centers).
package dynamo_test

import (
	"fmt"
	"slices"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/storage/memory"
	"github.com/dynamo-kv/dynamo/transport/memnet"
)

// Six nodes in three zones: every key's three replicas fall in three
// distinct zones, so a whole zone can fail and each key keeps two replicas,
// enough for R=2 and W=2 even with strict quorums.
func ExampleMember_zones() {
	net := memnet.New(memnet.Options{})
	members := []dynamo.Member{
		{ID: "a1", Addr: "a1", Zone: "eu-1a"}, {ID: "a2", Addr: "a2", Zone: "eu-1a"},
		{ID: "b1", Addr: "b1", Zone: "eu-1b"}, {ID: "b2", Addr: "b2", Zone: "eu-1b"},
		{ID: "c1", Addr: "c1", Zone: "eu-1c"}, {ID: "c2", Addr: "c2", Zone: "eu-1c"},
	}
	tr, _ := net.Listen("a1")
	defer tr.Close()
	cfg := dynamo.DefaultConfig() // N=3, R=2, W=2
	cfg.NodeID = "a1"
	cfg.Transport = tr
	cfg.Storage = memory.New()
	cfg.Members = members
	cfg.Partitions = 64
	store, err := dynamo.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()

	for _, key := range []string{"cart:alice", "cart:bob", "cart:carol"} {
		var zones []string
		for _, m := range store.PreferenceList([]byte(key), cfg.N) {
			zones = append(zones, m.Zone)
		}
		slices.Sort(zones)
		fmt.Println(key, zones)
	}
	// Output:
	// cart:alice [eu-1a eu-1b eu-1c]
	// cart:bob [eu-1a eu-1b eu-1c]
	// cart:carol [eu-1a eu-1b eu-1c]
}
