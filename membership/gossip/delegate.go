// memberlist's callbacks: ring records in node metadata, broadcasts and push/pull state exchanges (§4.8).

package gossip

import (
	"fmt"
	"slices"

	"github.com/hashicorp/memberlist"
)

// entryBroadcast is one ring record in memberlist's broadcast queue. A newer
// record about the same node replaces an older one still queued.
type entryBroadcast struct {
	id  string
	msg []byte
}

var _ memberlist.NamedBroadcast = (*entryBroadcast)(nil)

// Invalidates reports whether b replaces other, a record about the same node.
func (b *entryBroadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*entryBroadcast)
	return ok && o.id == b.id
}

// Name identifies the node the record is about.
func (b *entryBroadcast) Name() string { return b.id }

// Message returns the encoded record.
func (b *entryBroadcast) Message() []byte { return b.msg }

// Finished does nothing: nobody waits for a record's gossip to end.
func (b *entryBroadcast) Finished() {}

// gossipDelegate receives memberlist's callbacks. memberlist calls the
// Notify methods with its node lock held, so none of them may call back
// into memberlist, and none blocks.
type gossipDelegate struct{ g *Gossip }

var (
	_ memberlist.Delegate      = (*gossipDelegate)(nil)
	_ memberlist.EventDelegate = (*gossipDelegate)(nil)
)

// NodeMeta returns this node's record as metadata; Validate made sure it
// fits in limit.
func (d *gossipDelegate) NodeMeta(limit int) []byte {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	if len(d.g.meta) > limit {
		return nil
	}
	return slices.Clone(d.g.meta)
}

// NotifyMsg merges a broadcast ring record.
func (d *gossipDelegate) NotifyMsg(b []byte) {
	if d.g.closed.Load() {
		return
	}
	if d.g.signer != nil {
		if len(b) == 0 || b[0] != msgSignedV1 {
			d.g.logger.Warn("membership: ignoring a user message", "err", fmt.Errorf("%w: not a signed ring record", errMalformed))
			return
		}
		d.g.learnSealed([][]byte{b[1:]}, true)
		return
	}
	e, err := decodeEntry(msgEntryV1, b)
	if err != nil {
		d.g.logger.Warn("membership: ignoring a user message", "err", err)
		return
	}
	d.g.learn([]entry{e}, true)
}

// GetBroadcasts hands queued ring records to memberlist's gossip.
func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.g.queue.GetBroadcasts(overhead, limit)
}

// LocalState returns every ring record this node holds, tombstones included.
func (d *gossipDelegate) LocalState(join bool) []byte {
	d.g.mu.Lock()
	var b []byte
	var err error
	if d.g.signer != nil {
		b, err = encode(signedStateV1, d.g.view.sealedSnapshot())
	} else {
		b, err = encode(stateV1, d.g.view.snapshot())
	}
	d.g.mu.Unlock()
	if err != nil {
		d.g.logger.Error("membership: cannot encode ring state", "err", err)
		return nil
	}
	return b
}

// MergeRemoteState merges a peer's ring records. Records learned in a
// periodic exchange are spread further; at a join, both sides have just
// exchanged everything they know, so they are not.
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool) {
	if d.g.closed.Load() || len(buf) == 0 {
		return
	}
	if d.g.signer != nil {
		wires, err := decodeSealedState(buf)
		if err != nil {
			d.g.logger.Warn("membership: ignoring a peer's ring state", "err", err)
			return
		}
		d.g.learnSealed(wires, !join)
		return
	}
	records, err := decodeState(buf)
	if err != nil {
		d.g.logger.Warn("membership: ignoring a peer's ring state", "err", err)
		return
	}
	d.g.learn(records, !join)
}

// NotifyJoin records that a node is alive.
func (d *gossipDelegate) NotifyJoin(n *memberlist.Node) { d.node(n, true) }

// NotifyUpdate records an alive node's new metadata, such as its left flag.
func (d *gossipDelegate) NotifyUpdate(n *memberlist.Node) { d.node(n, true) }

// NotifyLeave records that a node is dead. memberlist calls it alike for a
// crash and a graceful leave; the node's record tells them apart.
func (d *gossipDelegate) NotifyLeave(n *memberlist.Node) { d.node(n, false) }

// node applies memberlist's news about n.
func (d *gossipDelegate) node(n *memberlist.Node, alive bool) {
	if d.g.closed.Load() {
		return
	}
	e, err := decodeEntry(metaV1, n.Meta)
	if err == nil && e.ID != n.Name {
		err = fmt.Errorf("%w: record for %q in the metadata of %q", errMalformed, e.ID, n.Name)
	}
	if err != nil {
		d.g.logger.Warn("membership: ignoring a node without a dynamo ring record", "member", n.Name, "err", err)
		return
	}
	if e.GossipAddr == "" {
		e.GossipAddr = n.Address()
	}
	d.g.observe(e, alive)
}
