// loss.go: the nemesis's data-loss kinds (issue 20, issue 12): disks rolled
// back to an earlier snapshot, records of single keys dropped, records
// damaged, all with the node's identity kept; and disks replaced again and
// again on one key's replicas.
package dynamotest

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/storage/memory"
)

// maxSnapshotAge bounds how far back a rolled-back disk goes: a disk older
// than the tombstone grace may bring back what a purge or a fold has since
// let go (Config.TombstoneGrace bounds how long a stale copy may linger).
const maxSnapshotAge = tombstoneGrace / 2

// simSecret is the stores' cluster secret: contexts carry real MACs.
var simSecret = []byte("dynamotest cluster secret, 32 B")

// heavy reports whether the run loses data often (SimConfig.PartialLoss or
// AmnesiaHeavy).
func (s *sim) heavy() bool { return s.cfg.PartialLoss || s.cfg.AmnesiaHeavy }

// lossAllowed reports whether a node may lose data now: in heavy runs, only
// once the replicas were found in sync since the previous loss.
func (s *sim) lossAllowed() bool { return !s.heavy() || s.lossHealed }

// recordLoss notes that a node lost data now.
func (s *sim) recordLoss() {
	s.amnesiaAt = append(s.amnesiaAt, s.now())
	s.lossHealed = false
	s.losses++
}

// lossNemesis takes one data-loss action (or, while the last loss is not
// healed, calms the cluster so that it gets in sync) and describes it.
func (s *sim) lossNemesis() string {
	if !s.lossHealed {
		s.calm()
		return "calm: heal before the next loss"
	}
	up := s.upNodes()
	if len(s.downNodes()) >= min(2, len(s.nodes)-1) || len(up) == 0 {
		return "nothing: too many nodes down for a loss"
	}
	var kinds []string
	if s.cfg.AmnesiaHeavy {
		kinds = append(kinds, "amnesia")
	}
	if s.cfg.PartialLoss {
		kinds = append(kinds, "snapshot", "rollback", "drop", "damage")
	}
	nd := s.nodes[up[s.rng.IntN(len(up))]]
	switch kind := kinds[s.rng.IntN(len(kinds))]; kind {
	case "amnesia":
		// One of the first key's replicas: its vector gains an incarnation.
		pref := nd.st.PreferenceList(s.keys[0], s.cfg.N)
		nd = s.nodeByID(pref[s.rng.IntN(len(pref))].ID)
		if nd.st == nil {
			return "nothing: the replica is down"
		}
		s.stop(nd)
		nd.amnesiac = true
		s.recordLoss()
		return "crash " + nd.id + " losing its storage (a replica of key 0)"
	case "snapshot":
		nd.snap, nd.snapAt = cloneDisk(nd.mem), s.now()
		return "snapshot " + nd.id + "'s disk"
	case "rollback":
		if nd.snap == nil || s.now()-nd.snapAt > maxSnapshotAge {
			nd.snap, nd.snapAt = cloneDisk(nd.mem), s.now()
			return "snapshot " + nd.id + "'s disk (no recent one to roll back to)"
		}
		age := s.now() - nd.snapAt
		s.stop(nd)
		_ = nd.mem.Close()
		nd.mem, nd.disk, nd.snap = nd.snap, nd.snap, nil
		s.recordLoss()
		return fmt.Sprintf("crash %s and roll its disk back %v, keeping its identity", nd.id, age)
	case "drop":
		k := s.rng.IntN(len(s.keys))
		s.stop(nd)
		dropped := s.editRecord(nd, s.keys[k], func([]byte) []byte { return nil })
		s.recordLoss()
		return fmt.Sprintf("crash %s and drop its record of key %d (%t), keeping its identity", nd.id, k, dropped)
	default: // damage
		k := s.rng.IntN(len(s.keys))
		at := s.rng.Uint64()
		s.stop(nd)
		damaged := s.editRecord(nd, s.keys[k], func(v []byte) []byte {
			v = bytes.Clone(v)
			v[at%uint64(len(v))] ^= 0x10
			return v
		})
		s.recordLoss()
		return fmt.Sprintf("crash %s and damage a byte of its record of key %d (%t)", nd.id, k, damaged)
	}
}

// blindAdd reports whether add o is a blind write: in PartialLoss runs, one
// add in four writes its element alone with the zero Context, the write
// that reissued dots lose outright (Riak's kv679 scenarios). It decides
// from the seed and the operation only, so it replays. A blind write is
// concurrent with everything, its client's own earlier writes included, so
// the checker does not count its sibling against the clients (see
// blindSiblings). It is the operation's goroutine; it sets o.blind.
func (s *sim) blindAdd(o *op) bool {
	o.blind = s.cfg.PartialLoss && mix64(uint64(s.cfg.Seed)^uint64(o.id)*0x2545f4914f6cdd1d)%4 == 0
	return o.blind
}

// blindSiblings counts the siblings read by o that are blind writes not yet
// merged: the one-element sets of blind adds to o's key.
func (s *sim) blindSiblings(o *op) int {
	n := 0
	for _, set := range o.sibSets {
		if len(set) == 1 && slices.ContainsFunc(s.ops, func(w *op) bool { return w.blind && w.key == o.key && w.elem == set[0] }) {
			n++
		}
	}
	return n
}

// blindPut writes o's element alone, superseding nothing.
func (s *sim) blindPut(ctx context.Context, o *op, st *dynamo.Store, key []byte) error {
	set := []int64{o.elem}
	value, err := s.codec.Marshal(set)
	if err != nil {
		return err
	}
	o.attempts = append(o.attempts, attempt{at: s.now(), set: set})
	return st.Put(ctx, key, value, dynamo.Context{})
}

// addStats adds a store's counters of damaged records, dot conflicts and
// folded vector entries to the run's.
func (s *sim) addStats(st dynamo.Stats) {
	s.storeStats.CorruptRecords += st.CorruptRecords
	s.storeStats.DotConflicts += st.DotConflicts
	s.storeStats.EntriesFolded += st.EntriesFolded
}

// editRecord replaces nd's stored data record of key (not hints) by
// edit(value), nil deleting it, and reports whether there was one.
func (s *sim) editRecord(nd *node, key []byte, edit func([]byte) []byte) bool {
	var dk, val []byte
	_ = nd.mem.ForEach([]byte{'d'}, func(k, v []byte) error {
		if len(k) == 5+len(key) && bytes.HasSuffix(k, key) {
			dk, val = bytes.Clone(k), bytes.Clone(v)
		}
		return nil
	})
	if dk == nil {
		return false
	}
	next := edit(val)
	if err := nd.mem.Update(dk, func([]byte) ([]byte, error) { return next, nil }); err != nil {
		s.fail(fmt.Errorf("edit %s's record: %w", nd.id, err))
	}
	return true
}

// cloneDisk copies a disk, as an image of it would.
func cloneDisk(m *memory.Store) *memory.Store {
	c := memory.New()
	_ = m.ForEach(nil, func(k, v []byte) error {
		v = bytes.Clone(v)
		return c.Update(k, func([]byte) ([]byte, error) { return v, nil })
	})
	return c
}

func (s *sim) nodeByID(id string) *node {
	for _, nd := range s.nodes {
		if nd.id == id {
			return nd
		}
	}
	panic("dynamotest: no node " + id)
}
