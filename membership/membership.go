// Package membership tells a dynamo node who is in the ring and who is
// reachable now (§4.8, DESIGN §5). The two are kept apart on purpose: a node
// the failure detector suspects stays in the ring and keeps its partitions;
// only an explicit leave changes ownership.
//
// Static is a fixed member list whose reachability tests switch by hand.
// Gossip runs hashicorp/memberlist.
package membership

// Member is one node of the ring.
type Member struct {
	// ID is the node's stable identity; it names the node in the ring.
	ID string
	// Addr is the address of the node's Transport.
	Addr string
}

// Membership reports the ring's members and their reachability.
// All methods are safe for concurrent use.
type Membership interface {
	// Members returns the nodes in the ring (joined and not left), sorted by
	// ID. The caller owns the returned slice.
	Members() []Member
	// Reachable reports whether the failure detector currently believes the
	// node with this ID is up. It is false for unknown IDs.
	Reachable(id string) bool
	// Subscribe returns a channel that receives a value after Members or
	// reachability changes. Sends never block: changes that arrive while a
	// value is pending are coalesced into it. cancel stops the deliveries.
	Subscribe() (changes <-chan struct{}, cancel func())
}
