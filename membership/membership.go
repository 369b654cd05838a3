// Package membership tells a dynamo node who is in the ring and who is
// reachable now (§4.8, DESIGN §5). The two are kept apart on purpose: a node
// the failure detector suspects stays in the ring and keeps its partitions;
// only an explicit leave changes ownership.
//
// This package holds the Membership interface, Member, and Static, a fixed
// member list whose reachability tests switch by hand. It does not link
// memberlist: the gossip implementation, on hashicorp/memberlist, is package
// membership/gossip.
package membership

// MaxZoneLen bounds Member.Zone in bytes. gossip.Config.Validate refuses a
// longer zone, and a ring record that carries one is dropped as malformed.
const MaxZoneLen = 64

// Member is one node of the ring.
type Member struct {
	// ID is the node's stable identity; it names the node in the ring.
	ID string
	// Addr is the address of the node's Transport.
	Addr string
	// Zone names the node's failure domain (a rack, an availability zone,
	// a data center), at most MaxZoneLen bytes. A dynamo ring places a key's
	// replicas in as many distinct zones as it can. Empty is a zone like any
	// other name, so a ring whose members all leave it empty places keys
	// exactly as a ring without zones.
	Zone string
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
