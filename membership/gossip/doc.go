// Package gossip is a membership.Membership kept by hashicorp/memberlist's
// SWIM gossip (§4.8, DESIGN §5): who is in the ring, kept apart from who is
// reachable now. A node the failure detector suspects stays in the ring and
// keeps its partitions; only an explicit leave changes ownership.
//
// # Basics
//
//	g, err := gossip.Join(ctx, gossip.Config{
//		NodeID:   "node-b",
//		BindAddr: "127.0.0.1:7946",          // gossip, UDP and TCP
//		DataAddr: "127.0.0.1:7000",          // this node's Transport
//		Seeds:    []string{"127.0.0.1:7947"}, // any node already in
//	})
//	if err != nil { ... }
//	defer g.Leave(5 * time.Second) // graceful; g.Close() is a crash
//	changes, cancel := g.Subscribe()
//	defer cancel()
//	for range changes { rebuild the ring from g.Members(), route by g.Reachable }
//
// With Gossip, a node is in Members from its join until it calls Leave or an
// operator calls Remove; a crash only makes Reachable false, even long after
// memberlist has forgotten the node, and a process restarted with the same
// NodeID is reachable again. Nodes exchange ring records (ID, data address,
// incarnation, left flag, gossip address, zone) so that a node joining later
// sees the same ring, failed members included.
//
// memberlist forgets a node it has held dead for a while and never contacts
// it again. So that a partition heals however long it lasted, a reconnect
// loop joins each ring member memberlist does not hold alive, at the gossip
// address from its record, with a backoff per member; and, after Join,
// the seeds while no other node is alive (Config.ReconnectInterval).
// With Config.JoinRetry, Join starts a node whose seeds do not
// answer alone instead of failing, and the loop joins it later.
//
// # Signed records
//
// With Config.Signer (dynamo.Open sets it from NodeConfig.Secrets or PKI),
// a ring record changes only by its owner. Each node signs its own record
// with the key of its certificate, which names its NodeID; the record
// travels sealed (record, signing time, signature, certificate chain), and
// a receiver takes it only if the chain led to the cluster's CA when the
// record was signed and names the node the record describes. A removal
// (Remove) is sealed by the member that made it, around the owner's own
// record, and taken only by nodes that hold that member unreachable; a
// removed node that still runs answers with a new incarnation. So a member
// that forges another member's record, replays an old one, or removes a
// live one is refused everywhere. memberlist's own metadata and SWIM
// messages are not signed: they only say which incarnation of a node is
// alive, so a forging member can at most make a node look unreachable
// for a moment, as a lossy network can. Without a Signer (dynamo's
// Insecure mode, or NodeConfig.TLS) records are not signed, and any node
// that can gossip can rewrite or evict any other.
//
// # Caveats
//
//   - Reachable follows memberlist's dead verdict: a suspect node counts as
//     reachable until its suspicion times out (about 1 s with ProfileLocal,
//     4 s and more with ProfileLAN). Coordinators should still time out slow
//     replicas themselves.
//   - A record missed by gossip arrives with the next push/pull exchange:
//     up to 30 s later with ProfileLAN. Leave hands its record to every live
//     peer directly, so a graceful leave does not wait for that.
//   - Left records (tombstones) are kept and exchanged for the life of the
//     cluster, a few dozen bytes each.
//   - Incarnations default to the wall clock: a node whose clock steps back
//     past its previous start must set Config.Incarnation.
//   - With ProfileLAN or ProfileWAN, memberlist refuses a restarted node on a
//     new gossip address until it forgets the old one (GossipToTheDeadTime,
//     30 s on a LAN); restarting on the same address avoids the wait.
//   - Two live processes with one NodeID are a configuration error that
//     memberlist reports as an address conflict.
//   - After a partition heals, the sides find each other within about 8
//     reconnect intervals (4 s with ProfileLocal, 80 s with ProfileLAN) plus
//     a join: that is how far the backoff on a member that stayed dead has
//     grown by then.
//   - The reconnect loop joins the gossip address a dead member last had. If
//     a node of another cluster now listens there, the two clusters merge;
//     give each cluster its own SecretKey so that they cannot.
//   - With the cluster secret as the root of trust, every holder of the
//     secret can derive the CA and mint a certificate for any NodeID:
//     signed records stop a member that runs dynamo, not one that mints
//     certificates. With an operator's PKI, a member holds only its own key.
//   - A signed record is checked when it arrives, against the CAs trusted
//     then. After a rotation drops a CA, nodes that join later refuse
//     records signed under it: a member that stayed down through a whole
//     rotation is not seen by them until it restarts (or is removed).
//     Running nodes sign their records again after each step (Resign).
//   - A sealed record carries its certificate chain: about 700 bytes with
//     one secret, 440 more per extra secret. One that does not fit a UDP
//     broadcast (three secrets, or a large operator chain) spreads by TCP
//     from its owner and by push/pull exchanges.
//   - Ring records carry a fifth field (the gossip address) and a sixth
//     (the zone). Releases before the fifth decode records strictly and
//     reject them, so a cluster cannot mix the two; from the fifth on,
//     records with fields appended later decode, their new fields skipped.
//     A node of a release before the zone relays records without it, which
//     a receiver that knows the zone never lets erase it; but such a node
//     builds its ring without zones, so upgrade every node before setting
//     zones.
package gossip
