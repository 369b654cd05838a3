// Gossip in a signed cluster: sealing this node's record, taking peers' sealed records and removals, refuting a removal (§4.8).

package gossip

import (
	"errors"
	"fmt"
	"time"
)

// ErrReachable is returned by Remove, in a signed cluster, for a member
// this node holds reachable: other nodes would refuse the removal, and the
// member would answer it with a new incarnation.
var ErrReachable = errors.New("dynamo: gossip: member is reachable; only an unreachable member can be removed")

// refuteTimeout bounds memberlist's update of this node's metadata when it
// refutes a removal.
const refuteTimeout = 5 * time.Second

// sealSelf signs this node's record as it stands, merges it into the view,
// queues it for broadcast if it fits one, and returns it as a message.
// Each seal of the record is dated later than the one before, so it
// replaces that one everywhere. g.mu must be held.
func (g *Gossip) sealSelf() ([]byte, error) {
	now := time.Now()
	if prev := g.view.seals[g.id]; prev.at >= now.UnixMilli() && g.view.records[g.id].Incarnation == g.self.Incarnation {
		now = time.UnixMilli(prev.at + 1)
	}
	s, err := sealEntry(g.signer, g.self, now)
	if err != nil {
		return nil, err
	}
	g.view.mergeSealed(g.self, s)
	g.broadcastSealed(g.id, s.wire)
	return sealedMessage(s.wire), nil
}

// sealedMessage is the user message that carries a sealed record.
func sealedMessage(wire []byte) []byte {
	return append([]byte{msgSignedV1}, wire...)
}

// broadcastSealed queues a sealed record for gossip if it fits memberlist's
// packets; a larger one spreads by push/pull exchanges (and its author
// sends it to every peer, see push). g.mu must be held.
func (g *Gossip) broadcastSealed(id string, wire []byte) {
	msg := sealedMessage(wire)
	if len(msg) > maxBroadcastSeal {
		return
	}
	g.queue.QueueBroadcast(&entryBroadcast{id: id, msg: msg})
}

// push sends msg, a record this node made, over TCP to every live peer in
// the background, when it is too large for broadcastSealed. g.mu must not
// be held.
func (g *Gossip) push(msg []byte) {
	if len(msg) <= maxBroadcastSeal {
		return
	}
	g.goBackground(func() { g.sendToPeers(msg) })
}

// Resign signs this node's ring record again with the Signer's current key
// and spreads it, so that nodes that trust only the credentials installed
// by a rotation still take it. Call it after each step of a rotation (see
// auth); dynamo.Node does. Without a Signer it does nothing.
func (g *Gossip) Resign() error {
	if g.signer == nil {
		return nil
	}
	if g.closed.Load() {
		return fmt.Errorf("membership: sign the ring record again: %w", ErrClosed)
	}
	g.mu.Lock()
	msg, err := g.sealSelf()
	g.mu.Unlock()
	if err != nil {
		return err
	}
	g.push(msg)
	return nil
}

// removeSealed is Remove in a signed cluster: a removal signed by this
// node, of the record its owner signed.
func (g *Gossip) removeSealed(id string) error {
	g.mu.Lock()
	e, ok := g.view.records[id]
	owner := g.view.seals[id].wire
	reachable := g.view.visible(id).reachable
	g.mu.Unlock()
	switch {
	case !ok || e.Left:
		return fmt.Errorf("membership: remove %q: %w", id, ErrUnknownMember)
	case reachable:
		return fmt.Errorf("membership: remove %q: %w", id, ErrReachable)
	}
	s, err := seal(g.signer, sealRemoval, owner, time.Now())
	if err != nil {
		return fmt.Errorf("membership: remove %q: %w", id, err)
	}
	e.Left = true
	g.mu.Lock()
	took := g.view.mergeSealed(e, s)
	if took {
		g.broadcastSealed(id, s.wire)
	}
	g.size.Store(int64(g.view.numMembers()))
	g.mu.Unlock()
	if !took {
		return fmt.Errorf("membership: remove %q: %w", id, ErrUnknownMember)
	}
	g.push(sealedMessage(s.wire))
	g.logger.Info("membership: removed member from the ring", "member", id)
	g.subs.Notify()
	return nil
}

// learnSealed takes the sealed records heard from peers that change the
// view and check out: a record signed by the node it describes, or a
// removal signed by a member, of a node this one does not hold alive. With
// spread set, it queues those for broadcast. A removal of this node makes
// it refute: it takes a new incarnation. Signatures are checked only for
// records that would change the view, and without g.mu held.
func (g *Gossip) learnSealed(wires [][]byte, spread bool) {
	changed, refute := false, false
	now := time.Now()
	for _, w := range wires {
		o, err := openSealed(w)
		if err != nil {
			g.logger.Warn("membership: ignoring a malformed ring record", "err", err)
			continue
		}
		g.mu.Lock()
		take := g.view.takesSealed(o.rec, o.seal)
		g.mu.Unlock()
		if !take {
			continue
		}
		remover, err := o.verify(g.signer, now)
		if err != nil {
			g.logger.Warn("membership: refusing a ring record", "member", o.rec.ID, "err", err)
			continue
		}
		g.mu.Lock()
		if o.env.Kind == sealRemoval {
			inc, alive := g.view.alive[o.rec.ID]
			self := o.rec.ID == g.id && !g.self.Left
			if self && o.rec.Incarnation == g.self.Incarnation {
				refute = true
			}
			if self || alive && inc == o.rec.Incarnation {
				g.mu.Unlock()
				g.logger.Warn("membership: refusing the removal of a live member", "member", o.rec.ID, "by", remover)
				continue
			}
		}
		before := g.view.visible(o.rec.ID)
		if g.view.mergeSealed(o.rec, o.seal) {
			if o.rec.ID == g.id && !g.self.Left {
				g.logger.Warn("membership: a peer changed this node's ring record", "incarnation", o.rec.Incarnation, "left", o.rec.Left)
			}
			if spread {
				g.broadcastSealed(o.rec.ID, w)
			}
			changed = changed || g.view.visible(o.rec.ID) != before
		}
		g.size.Store(int64(g.view.numMembers()))
		g.mu.Unlock()
	}
	if changed {
		g.subs.Notify()
	}
	if refute {
		// memberlist calls this with its locks held: update its metadata
		// from another goroutine.
		g.goBackground(g.refute)
	}
}

// refute answers a removal of this node while it runs: it takes a larger
// incarnation, which beats the removal everywhere, and publishes it.
func (g *Gossip) refute() {
	g.mu.Lock()
	if g.self.Left || g.closed.Load() {
		g.mu.Unlock()
		return
	}
	g.self.Incarnation = max(uint64(time.Now().UnixNano()), g.self.Incarnation+1)
	meta, err := encode(metaV1, metaRecord(g.self))
	if err == nil {
		g.meta = meta
	}
	var msg []byte
	if err == nil {
		msg, err = g.sealSelf()
	}
	inc := g.self.Incarnation
	g.size.Store(int64(g.view.numMembers()))
	g.mu.Unlock()
	if err != nil {
		g.logger.Error("membership: cannot refute a removal of this node", "err", err)
		return
	}
	g.logger.Warn("membership: a member removed this node while it runs; rejoining with a new incarnation", "incarnation", inc)
	g.subs.Notify()
	if err := g.ml.UpdateNode(refuteTimeout); err != nil {
		g.logger.Warn("membership: publish the new incarnation", "err", err)
	}
	g.sendToPeers(msg)
}

// pushSelf sends this node's sealed record to every live peer, if it is
// too large for a broadcast: after a join, the seed alone has it.
func (g *Gossip) pushSelf() {
	if g.signer == nil {
		return
	}
	g.mu.Lock()
	wire := g.view.seals[g.id].wire
	g.mu.Unlock()
	if wire != nil {
		g.push(sealedMessage(wire))
	}
}
