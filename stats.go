// stats.go: the counters a Store reports of its background work (anti-entropy
// §4.7, hinted handoff §4.6, transfers, repairs of damaged records).
package dynamo

import "sync/atomic"

type storeStats struct {
	purged      atomic.Int64
	readRepairs atomic.Int64
	coalesced   atomic.Int64
}

// Stats are counters of a Store's background work since it started.
type Stats struct {
	ReadRepairs int64     `json:"read_repairs"` // replicas sent a merged state after a Get
	Hints       HintStats `json:"hints"`
	// PendingTransfers is the partitions this node still has to pull.
	PendingTransfers int `json:"pending_transfers"`
	// PartitionsPulled and PartitionsDropped count finished transfers: pulls
	// of newly owned partitions, and drops of partitions handed to their owners.
	PartitionsPulled  int64 `json:"partitions_pulled"`
	PartitionsDropped int64 `json:"partitions_dropped"`
	// Transfer totals what this node's pulls and pushes of partitions moved:
	// round trips, keys and bytes each way.
	Transfer SyncResult `json:"transfer"`
	// TombstonesPurged counts the tombstone-only keys this node purged, as
	// the first primary of each, once every primary held them.
	TombstonesPurged int64 `json:"tombstones_purged"`
	// CorruptRecords counts stored states found damaged (failing their
	// checksum or their decoding) and replaced: the key then came back from
	// the other replicas.
	CorruptRecords int64 `json:"corrupt_records"`
	// DotConflicts counts merges that found one dot carrying two different
	// versions, which only lost or damaged data produces; both versions were
	// kept (see syncStates).
	DotConflicts int64 `json:"dot_conflicts"`
	// EntriesFolded counts dead version-vector entries this replica folded
	// away (entries of earlier runs and incarnations of nodes).
	EntriesFolded int64 `json:"entries_folded"`
	// CoalescedGets counts the Gets that waited for a quorum read shared
	// with concurrent Gets of the same key (coalesce.go) instead of
	// starting one of their own.
	CoalescedGets int64 `json:"coalesced_gets"`
	// HotKeys are the keys this node's callers asked for most lately, most
	// requested first (see HotKey).
	HotKeys []HotKey `json:"hot_keys"`
}

// HintStats describes the hints a node holds for others.
type HintStats struct {
	Pending   map[string]int `json:"pending"`   // hints held, per intended owner
	Bytes     int64          `json:"bytes"`     // bytes of hints held
	Stored    int64          `json:"stored"`    // hints accepted (merges into an existing hint count too)
	Delivered int64          `json:"delivered"` // hints acknowledged by their owner
	Refused   int64          `json:"refused"`   // hints declined because the hint store was full
	// Rehomed counts hints for nodes that left the ring, handed to the
	// current primaries of their keys instead.
	Rehomed int64 `json:"rehomed"`
}

// Stats returns the Store's counters.
func (s *Store) Stats() Stats {
	s.transfer.mu.Lock()
	pulled, dropped, wire := s.transfer.pulls, s.transfer.drops, s.transfer.wire
	s.transfer.mu.Unlock()
	r := s.rep
	return Stats{ReadRepairs: s.stats.readRepairs.Load(), Hints: s.hintStats(), PendingTransfers: s.PendingTransfers(),
		PartitionsPulled: pulled, PartitionsDropped: dropped, Transfer: wire, TombstonesPurged: s.stats.purged.Load(),
		CorruptRecords: r.corruptRecords.Load(), DotConflicts: r.dotConflicts.Load(), EntriesFolded: r.entriesFolded.Load(),
		CoalescedGets: s.stats.coalesced.Load(), HotKeys: s.hot.top()}
}

func (s *Store) hintStats() HintStats {
	h := s.rep.hints
	h.mu.Lock()
	defer h.mu.Unlock()
	pending := make(map[string]int, len(h.perTarget))
	for t, n := range h.perTarget {
		pending[t] = n
	}
	return HintStats{Pending: pending, Bytes: h.bytes, Stored: h.stored.Load(), Delivered: s.handoff.delivered.Load(),
		Refused: h.refused.Load(), Rehomed: s.handoff.rehomed.Load()}
}
