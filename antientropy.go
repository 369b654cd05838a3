// antientropy.go: §4.7 anti-entropy rounds: with each peer, compare the
// hashes of the partitions both are primaries of, descend only where they
// differ, and exchange the full states of the keys that differ.
package dynamo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// sharedPartitions lists, in order, the partitions for which both this node
// and peer are among the N primaries. The slice is shared (sharedcache.go):
// callers must not modify it.
func (s *Store) sharedPartitions(r *ring, peer string) []uint32 {
	return s.shared.of(s, r)[peer]
}

// AntiEntropyConfig tunes anti-entropy. A zero field takes the default in
// its comment.
type AntiEntropyConfig struct {
	// Interval between background rounds. Default 1 minute. Negative
	// disables the background rounds (AntiEntropy still runs on demand).
	Interval time.Duration
	// KeysPerSecond bounds the keys a round exchanges. Default 5,000.
	KeysPerSecond int
}

func (a AntiEntropyConfig) withDefaults() AntiEntropyConfig {
	if a.Interval == 0 {
		a.Interval = time.Minute
	}
	if a.KeysPerSecond == 0 {
		a.KeysPerSecond = 5000
	}
	return a
}

// SyncResult describes one anti-entropy exchange.
type SyncResult struct {
	Peers          int   `json:"peers"`           // peers compared
	RoundTrips     int   `json:"round_trips"`     // requests sent
	Partitions     int   `json:"partitions"`      // partitions compared
	DiffPartitions int   `json:"diff_partitions"` // partitions whose hashes differed
	DiffKeys       int   `json:"diff_keys"`       // keys whose digests differed
	KeysSent       int   `json:"keys_sent"`       // states pushed to peers
	KeysReceived   int   `json:"keys_received"`   // states taken from peers
	BytesSent      int64 `json:"bytes_sent"`      // request bytes
	BytesReceived  int64 `json:"bytes_received"`  // reply bytes
	Purged         int   `json:"purged"`          // tombstone-only keys purged after the exchange
}

func (r *SyncResult) add(o SyncResult) {
	r.Peers += o.Peers
	r.RoundTrips += o.RoundTrips
	r.Partitions += o.Partitions
	r.DiffPartitions += o.DiffPartitions
	r.DiffKeys += o.DiffKeys
	r.KeysSent += o.KeysSent
	r.KeysReceived += o.KeysReceived
	r.BytesSent += o.BytesSent
	r.BytesReceived += o.BytesReceived
	r.Purged += o.Purged
}

// AntiEntropy runs one anti-entropy round now, as the background loop does
// every AntiEntropy.Interval: with every reachable node that shares
// partitions with this one, it compares hashes of the shared partitions,
// descends only where they differ, and exchanges the full states of the
// differing keys, which both sides merge (comparing identical replicas costs
// one round trip per peer). Then it purges the tombstones this node is the
// first primary of that every primary holds and that are older than
// TombstoneGrace (SyncResult.Purged; also counted in Stats). The background
// round syncs only with the peers whose ID sorts after this node's, so that
// each pair syncs once; this one syncs with all of them.
func (s *Store) AntiEntropy(ctx context.Context) (SyncResult, error) {
	res, err := s.antiEntropy(ctx, false)
	res.Purged = s.purgeTombstones(ctx)
	return res, err
}

func (s *Store) antiEntropy(ctx context.Context, onlyGreater bool) (SyncResult, error) {
	start := time.Now()
	r := s.ring.Load()
	var total SyncResult
	var errs []error
	var peers []AntiEntropyPeer
	for _, m := range r.members {
		if m.ID == s.cfg.NodeID || (onlyGreater && m.ID < s.cfg.NodeID) || !s.reachable(m.ID) {
			continue
		}
		parts := s.sharedPartitions(r, m.ID)
		if len(parts) == 0 {
			continue
		}
		began := time.Now()
		res, err := s.syncWith(ctx, m, parts, r.fingerprint, false, syncBoth)
		total.add(res)
		p := AntiEntropyPeer{Peer: m.ID, At: time.Now(), Duration: time.Since(began), Result: res}
		if err != nil {
			p.Err = err.Error()
			errs = append(errs, fmt.Errorf("with %s: %w", m.ID, err))
		}
		peers = append(peers, p)
	}
	err := errors.Join(errs...)
	s.metrics.ae.record(start, total, peers, err)
	return total, err
}

func (s *Store) antiEntropyLoop(ctx context.Context) {
	if s.cfg.AntiEntropy.Interval < 0 {
		return
	}
	t := time.NewTicker(s.cfg.AntiEntropy.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := s.antiEntropy(ctx, true)
		if err != nil {
			s.log.Debug("anti-entropy round failed", "err", err)
		}
		if res.DiffKeys > 0 {
			// Writes in flight make replicas differ for a moment: steady
			// state, not news (Metrics counts it).
			s.log.Debug("anti-entropy repaired keys", "keys", res.DiffKeys, "sent", res.KeysSent, "received", res.KeysReceived)
		}
		s.purgeTombstones(ctx)
		s.compactRound(ctx)
	}
}

// aeFanout is how many subranges a differing range splits into.
const aeFanout = 64

// aeBatch bounds the ranges, partitions or keys in one request.
const aeBatch = 4096

// syncMode says which way an anti-entropy exchange moves states.
type syncMode int

const (
	syncBoth syncMode = iota // both sides end with the merge (anti-entropy)
	syncPull                 // only this node takes the peer's states (a new owner)
	syncPush                 // only the peer takes this node's states (an old owner)
)

// aeBatchKeys bounds the keys of one exchange: fewer at a low
// AntiEntropy.KeysPerSecond (see pacer).
const aeBatchKeys = 256

// syncWith compares the partitions parts with peer and repairs one or both
// sides, as mode says. explicit sends the partition list; otherwise the peer
// derives it from its ring, which must have the same fingerprint.
func (s *Store) syncWith(ctx context.Context, peer Member, parts []uint32, fingerprint uint64, explicit bool, mode syncMode) (SyncResult, error) {
	res := SyncResult{Peers: 1, Partitions: len(parts)}
	call := func(b body) (body, error) {
		req := s.encode(b)
		res.RoundTrips++
		res.BytesSent += int64(len(req))
		ctx, cancel := context.WithTimeout(ctx, 10*s.cfg.ReplicaTimeout)
		defer cancel()
		raw, err := s.cfg.Transport.Call(ctx, peer.Addr, req)
		if err != nil {
			return nil, err
		}
		res.BytesReceived += int64(len(raw))
		resp, err := s.reply(peer, raw)
		if err != nil {
			return nil, err
		}
		return resp.Body, nil
	}

	// Descend the tree: ranges whose hashes differ split until single partitions.
	prefix := s.prefixHashes(parts)
	ranges := []uint32{0, uint32(len(parts))}
	var runs []uint32
	if explicit {
		runs = toRuns(parts)
	}
	var diffParts []uint32
	for len(ranges) > 0 {
		var next []uint32
		for len(ranges) > 0 {
			n := min(len(ranges), 2*aeBatch)
			batch := ranges[:n]
			ranges = ranges[n:]
			resp, err := call(&rangesReq{Explicit: explicit, Runs: runs, RingHash: fingerprint, Ranges: batch})
			if err != nil {
				return res, err
			}
			hashes, ok := resp.(*hashesReply)
			if !ok || len(hashes.Hashes) != len(batch)/2 {
				return res, fmt.Errorf("%w: bad range hashes from %s", ErrProtocol, peer.ID)
			}
			for i := 0; i < len(batch); i += 2 {
				lo, hi := batch[i], batch[i+1]
				if prefix[hi]^prefix[lo] == hashes.Hashes[i/2] {
					continue
				}
				if hi-lo == 1 {
					diffParts = append(diffParts, parts[lo])
					continue
				}
				step := max(1, (hi-lo+aeFanout-1)/aeFanout)
				for a := lo; a < hi; a += step {
					next = append(next, a, min(a+step, hi))
				}
			}
		}
		ranges = next
	}
	res.DiffPartitions = len(diffParts)

	// Leaves: compare the differing partitions key by key. The peer lists
	// them in pages bounded in bytes; a partition is compared once its
	// listing is complete.
	theirs := map[string]uint64{} // the listed keys of the partition in progress
	var resume []byte             // the last key listed of diffParts[0], when partial
	for len(diffParts) > 0 {
		batch := diffParts[:min(len(diffParts), aeBatch)]
		resp, err := call(&keysReq{Parts: batch, After: resume})
		if err != nil {
			return res, err
		}
		list, ok := resp.(*keyListReply)
		if !ok || list.Whole > len(batch) || (list.Whole == 0 && len(list.Keys) == 0) {
			return res, fmt.Errorf("%w: bad key list from %s", ErrProtocol, peer.ID)
		}
		var diff [][]byte
		cur := 0 // index in batch of the partition the listed keys are in
		for i, k := range list.Keys {
			p := uint32(partitionOf(k, s.cfg.Partitions))
			for cur < len(batch) && batch[cur] != p {
				if cur >= list.Whole {
					return res, fmt.Errorf("%w: key list from %s out of order", ErrProtocol, peer.ID)
				}
				if diff, err = s.diffPartition(batch[cur], theirs, diff); err != nil {
					return res, err
				}
				cur++
			}
			if cur == len(batch) {
				return res, fmt.Errorf("%w: key list from %s names a partition not asked for", ErrProtocol, peer.ID)
			}
			theirs[string(k)] = list.Digests[i]
		}
		for ; cur < list.Whole; cur++ {
			if diff, err = s.diffPartition(batch[cur], theirs, diff); err != nil {
				return res, err
			}
		}
		diffParts = diffParts[list.Whole:]
		resume = nil
		if list.Whole < len(batch) {
			if len(list.Keys) == 0 || partitionOf(list.Keys[len(list.Keys)-1], s.cfg.Partitions) != int(batch[list.Whole]) {
				return res, fmt.Errorf("%w: key list from %s stopped without progress", ErrProtocol, peer.ID)
			}
			resume = bytes.Clone(list.Keys[len(list.Keys)-1])
		}
		res.DiffKeys += len(diff)
		if err := s.exchange(ctx, peer, diff, mode, &res, call); err != nil {
			return res, err
		}
	}
	return res, nil
}

// prefixHashes returns x with x[i] the XOR of the hashes of parts[:i].
func (s *Store) prefixHashes(parts []uint32) []uint64 {
	prefix := make([]uint64, len(parts)+1)
	for i, p := range parts {
		prefix[i+1] = prefix[i] ^ s.rep.tree.get(int(p))
	}
	return prefix
}

// diffPartition appends to diff the keys of partition p whose digests differ
// between this node and theirs (the peer's listing of p, which it empties).
func (s *Store) diffPartition(p uint32, theirs map[string]uint64, diff [][]byte) ([][]byte, error) {
	err := s.rep.listPartition(int(p), nil, func(key []byte, d uint64) bool {
		if h, ok := theirs[string(key)]; !ok || h != d {
			diff = append(diff, bytes.Clone(key))
		}
		delete(theirs, string(key))
		return true
	})
	if err != nil {
		return diff, err
	}
	var only [][]byte // keys only the peer holds
	for k := range theirs {
		only = append(only, []byte(k))
		delete(theirs, k)
	}
	slices.SortFunc(only, bytes.Compare)
	return append(diff, only...), nil
}

// exchange pushes this node's states of keys to peer, which merges them and
// answers with its merged states where they differ; this node merges those
// in one storage commit. Batches are bounded by the anti-entropy rate and in
// bytes both ways: the peer answers only as many keys as fit its own budget,
// and the rest are asked again without this node's states (which the peer
// already merged).
func (s *Store) exchange(ctx context.Context, peer Member, keys [][]byte, mode syncMode, res *SyncResult, call func(body) (body, error)) error {
	batchKeys := batchFor(s.cfg.AntiEntropy.KeysPerSecond, aeBatchKeys)
	var again [][]byte // keys pushed already, whose merged state is still owed
	for len(keys) > 0 || len(again) > 0 {
		var batch, states [][]byte
		size := 0
		for len(again) > 0 && len(batch) < batchKeys && (len(batch) == 0 || size+len(again[0])+16 <= s.batchBytes) {
			batch, states = append(batch, again[0]), append(states, nil)
			size += len(again[0]) + 16
			again = again[1:]
		}
		for len(keys) > 0 && len(batch) < batchKeys {
			var raw []byte
			if mode != syncPull {
				var err error
				if raw, err = s.rep.raw(partitionOf(keys[0], s.cfg.Partitions), keys[0]); err != nil {
					return err
				}
			}
			n := len(keys[0]) + len(raw) + 16
			if len(batch) > 0 && size+n > s.batchBytes {
				break
			}
			if len(raw) > 0 {
				res.KeysSent++
			}
			batch, states = append(batch, keys[0]), append(states, raw)
			size += n
			keys = keys[1:]
		}
		if err := s.aePace.wait(ctx, len(batch)); err != nil {
			return err
		}
		resp, err := call(&exchangeReq{Keys: batch, States: states, PushOnly: mode == syncPush})
		if err != nil {
			return err
		}
		got, ok := resp.(*statesReply)
		if !ok || len(got.States) > len(batch) || (mode != syncPush && len(got.States) == 0) {
			return fmt.Errorf("%w: bad exchange reply from %s", ErrProtocol, peer.ID)
		}
		parts := make([]int, len(got.States))
		merged := make([]state, len(got.States))
		for i, raw := range got.States {
			parts[i] = partitionOf(batch[i], s.cfg.Partitions)
			if len(raw) == 0 {
				continue
			}
			st, err := decodeState(raw)
			if err != nil {
				return fmt.Errorf("from %s: %w", peer.ID, err)
			}
			merged[i] = st
			res.KeysReceived++
		}
		if err := s.rep.mergeBatch(parts, batch[:len(merged)], merged); err != nil {
			return err
		}
		if mode != syncPush {
			again = append(again, batch[len(got.States):]...)
		}
	}
	return nil
}
