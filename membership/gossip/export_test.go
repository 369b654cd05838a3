// Test hooks into the gossip internals, for the forging-member tests (package gossip_test).

package gossip

import "time"

// SealedRecordMessage returns a user message carrying a ring record sealed
// by s, as a node of a signed cluster broadcasts it; s need not be the
// record's owner.
func SealedRecordMessage(s Signer, id, addr string, incarnation uint64, left bool, at time.Time) ([]byte, error) {
	sd, err := sealEntry(s, entry{ID: id, Addr: addr, Incarnation: incarnation, Left: left}, at)
	if err != nil {
		return nil, err
	}
	return sealedMessage(sd.wire), nil
}

// RemovalMessage returns a user message carrying a removal, sealed by s, of
// the sealed record in owner (a message from SealedOf).
func RemovalMessage(s Signer, owner []byte, at time.Time) ([]byte, error) {
	sd, err := seal(s, sealRemoval, owner[1:], at)
	if err != nil {
		return nil, err
	}
	return sealedMessage(sd.wire), nil
}

// TamperedMessage returns owner (a message from SealedOf) with the record
// inside it changed to left at incarnation, its owner's signature and chain
// kept.
func TamperedMessage(owner []byte, incarnation uint64) ([]byte, error) {
	o, err := openSealed(owner[1:])
	if err != nil {
		return nil, err
	}
	o.rec.Incarnation = incarnation
	o.rec.Left = true
	body, err := encode(0, o.rec)
	if err != nil {
		return nil, err
	}
	o.env.Body = body[1:]
	wire, err := encodeEnvelope(o.env)
	if err != nil {
		return nil, err
	}
	return sealedMessage(wire), nil
}

// UnsignedRecordMessage returns a user message carrying an unsigned ring
// record, as a node of an unsigned cluster broadcasts it.
func UnsignedRecordMessage(id, addr string, incarnation uint64, left bool) ([]byte, error) {
	return encode(msgEntryV1, entry{ID: id, Addr: addr, Incarnation: incarnation, Left: left})
}

// SealedOf returns the message carrying the sealed record g holds for id,
// or nil.
func (g *Gossip) SealedOf(id string) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	if w := g.view.seals[id].wire; w != nil {
		return sealedMessage(w)
	}
	return nil
}

// Incarnation returns the incarnation of the record g holds for id.
func (g *Gossip) Incarnation(id string) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.view.records[id].Incarnation
}

// Forge makes g spread msg by every way it spreads records: a TCP message
// to every live peer now, memberlist's broadcasts, and, for a sealed
// record, the push/pull state g sends from now on (it replaces g's own copy
// of that node's record, unchecked).
func (g *Gossip) Forge(msg []byte) error {
	if msg[0] == msgSignedV1 {
		o, err := openSealed(msg[1:])
		if err != nil {
			return err
		}
		g.mu.Lock()
		g.view.records[o.rec.ID] = o.rec
		g.view.seals[o.rec.ID] = o.seal
		g.mu.Unlock()
	}
	g.queue.QueueBroadcast(&entryBroadcast{id: string(msg), msg: msg}) // its own name: forgeries do not replace each other
	n, sent := g.sendToPeers(msg)
	for range n {
		if err := <-sent; err != nil {
			return err
		}
	}
	return nil
}
