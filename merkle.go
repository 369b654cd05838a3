// merkle.go: §4.7 anti-entropy with hash trees: one hash per partition kept
// up to date as each write lands, range hashes over the partitions two
// replicas share, and a push-pull exchange of the keys that differ.
package dynamo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// hashTree keeps one hash per partition: the XOR of the digests of the
// partition's keys (a key's digest hashes its name and encoded state). XOR
// makes the tree incremental: a write changes its partition's hash by
// old^new digest in O(1), whatever order concurrent writes land in, and any
// range of partitions hashes to the XOR of its partitions, which a prefix
// array gives in O(1). The levels of the Merkle tree (root, ranges,
// partitions, keys) are therefore derived on demand, never rebuilt by scans.
//
// The tree lives in memory and is rebuilt by one scan of the data at start-up
// (about a second per million keys of 1 KiB): that costs less than keeping it
// durable on every write, and a rebuilt tree can never disagree with the data.
type hashTree struct {
	parts []atomic.Uint64
}

func newHashTree(partitions int) *hashTree {
	return &hashTree{parts: make([]atomic.Uint64, partitions)}
}

func (t *hashTree) xor(p int, v uint64) {
	if v == 0 {
		return
	}
	for {
		old := t.parts[p].Load()
		if t.parts[p].CompareAndSwap(old, old^v) {
			return
		}
	}
}

func (t *hashTree) get(p int) uint64 { return t.parts[p].Load() }

// digest identifies a key's stored state: zero for an absent key.
func digest(key, enc []byte) uint64 {
	if len(enc) == 0 {
		return 0
	}
	d := hashWords(hashWords(uint64(len(key)), key), enc)
	if d != 0 {
		return d
	}
	return 1
}

// hashWords folds b into h eight bytes at a time (a splitmix64 chain): several
// times faster than byte-wise FNV on states of a few KiB, and the same on
// every node and platform.
func hashWords(h uint64, b []byte) uint64 {
	h = mix64(h ^ uint64(len(b)) ^ 0x9e3779b97f4a7c15)
	for len(b) >= 8 {
		h = mix64(h ^ binary.LittleEndian.Uint64(b))
		b = b[8:]
	}
	var tail [8]byte
	copy(tail[:], b)
	return mix64(h ^ binary.LittleEndian.Uint64(tail[:]) ^ uint64(len(b))<<56)
}

// rebuildTree hashes every stored key into the tree (at start-up).
func (s *Store) rebuildTree() error { return s.scanTree(s.tree, true) }

// scanTree hashes every stored key into t and, with tombs, indexes the
// tombstone-only keys.
func (s *Store) scanTree(t *hashTree, tombs bool) error {
	return s.cfg.Storage.ForEach([]byte{spaceData}, func(k, v []byte) error {
		if len(k) < 6 {
			return nil
		}
		p := int(binary.BigEndian.Uint32(k[1:5]))
		if p < len(t.parts) {
			t.xor(p, digest(k[5:], v))
		}
		if !tombs {
			return nil
		}
		if st, err := decodeState(v); err == nil && onlyTombstones(st) {
			s.tombstones.set(k[5:], true)
		}
		return nil
	})
}

// updateData is the one path by which the key space changes: it runs fn as a
// Storage.Update of key's data and applies the change to the hash tree. fn
// returns the new encoded state and whether it holds only tombstones.
func (s *Store) updateData(key []byte, fn func(cur []byte) ([]byte, bool, error)) error {
	r := s.ring.Load()
	p := r.partition(key)
	var change uint64
	var tombs bool
	err := s.cfg.Storage.Update(s.dataKey(r, key), func(cur []byte) ([]byte, error) {
		out, t, err := fn(cur)
		if err != nil {
			return nil, err
		}
		change = digest(key, cur) ^ digest(key, out)
		tombs = t
		return out, nil
	})
	if err == nil {
		s.tree.xor(p, change)
		s.tombstones.set(key, tombs)
	}
	return err
}

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
	r := s.ring.Load()
	var total SyncResult
	var errs []error
	for _, m := range r.members {
		if m.ID == s.cfg.NodeID || (onlyGreater && m.ID < s.cfg.NodeID) || !s.reachable(m.ID) {
			continue
		}
		parts := s.sharedPartitions(r, m.ID)
		if len(parts) == 0 {
			continue
		}
		res, err := s.syncWith(ctx, m, parts, r.fingerprint, false, syncBoth)
		total.add(res)
		if err != nil {
			errs = append(errs, fmt.Errorf("with %s: %w", m.ID, err))
		}
	}
	return total, errors.Join(errs...)
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
			s.log.Info("anti-entropy repaired keys", "keys", res.DiffKeys, "sent", res.KeysSent, "received", res.KeysReceived)
		}
		s.purgeTombstones(ctx)
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

// syncWith compares the partitions parts with peer and repairs one or both
// sides, as mode says. explicit sends the partition list; otherwise the peer
// derives it from its ring, which must have the same fingerprint.
func (s *Store) syncWith(ctx context.Context, peer Member, parts []uint32, fingerprint uint64, explicit bool, mode syncMode) (SyncResult, error) {
	res := SyncResult{Peers: 1, Partitions: len(parts)}
	base := message{Version: protocolVersion, Cluster: s.wireCluster, Hint: s.cfg.NodeID, RingHash: fingerprint}
	if explicit {
		base.Parts = toRuns(parts)
		base.Flags = flagPartRuns
	}
	call := func(m *message) (*message, error) {
		req := encodeMessage(m)
		res.RoundTrips++
		res.BytesSent += int64(len(req))
		ctx, cancel := context.WithTimeout(ctx, 10*s.cfg.ReplicaTimeout)
		defer cancel()
		raw, err := s.cfg.Transport.Call(ctx, peer.Addr, req)
		if err != nil {
			return nil, err
		}
		res.BytesReceived += int64(len(raw))
		resp, err := decodeMessage(raw)
		if err != nil {
			return nil, err
		}
		if resp.Kind == kindError {
			return nil, errorFromMessage(resp)
		}
		return resp, nil
	}

	// Descend the tree: ranges whose hashes differ split until single partitions.
	prefix := s.prefixHashes(parts)
	ranges := []uint32{0, uint32(len(parts))}
	var diffParts []uint32
	for len(ranges) > 0 {
		var next []uint32
		for len(ranges) > 0 {
			n := min(len(ranges), 2*aeBatch)
			batch := ranges[:n]
			ranges = ranges[n:]
			m := base
			m.Kind, m.Ranges = kindAERanges, batch
			resp, err := call(&m)
			if err != nil {
				return res, err
			}
			if resp.Kind != kindAEHashes || len(resp.Hashes) != len(batch)/2 {
				return res, fmt.Errorf("%w: bad range hashes from %s", ErrProtocol, peer.ID)
			}
			for i := 0; i < len(batch); i += 2 {
				lo, hi := batch[i], batch[i+1]
				if prefix[hi]^prefix[lo] == resp.Hashes[i/2] {
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
		m := base
		m.Kind, m.Parts, m.Key = kindAEKeys, batch, resume
		resp, err := call(&m)
		if err != nil {
			return res, err
		}
		if resp.Kind != kindAEKeyList || len(resp.Keys) != len(resp.Hashes) || resp.Got < 0 || resp.Got > len(batch) ||
			(resp.Got == 0 && len(resp.Keys) == 0) {
			return res, fmt.Errorf("%w: bad key list from %s", ErrProtocol, peer.ID)
		}
		r := s.ring.Load()
		var diff [][]byte
		cur := 0 // index in batch of the partition the listed keys are in
		for i, k := range resp.Keys {
			p := uint32(r.partition(k))
			for cur < len(batch) && batch[cur] != p {
				if cur >= resp.Got {
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
			theirs[string(k)] = resp.Hashes[i]
		}
		for ; cur < resp.Got; cur++ {
			if diff, err = s.diffPartition(batch[cur], theirs, diff); err != nil {
				return res, err
			}
		}
		diffParts = diffParts[resp.Got:]
		resume = nil
		if resp.Got < len(batch) {
			if len(resp.Keys) == 0 || r.partition(resp.Keys[len(resp.Keys)-1]) != int(batch[resp.Got]) {
				return res, fmt.Errorf("%w: key list from %s stopped without progress", ErrProtocol, peer.ID)
			}
			resume = bytes.Clone(resp.Keys[len(resp.Keys)-1])
		}
		res.DiffKeys += len(diff)
		if err := s.exchange(ctx, peer, base, diff, mode, &res, call); err != nil {
			return res, err
		}
	}
	return res, nil
}

// diffPartition appends to diff the keys of partition p whose digests differ
// between this node and theirs (the peer's listing of p, which it empties).
func (s *Store) diffPartition(p uint32, theirs map[string]uint64, diff [][]byte) ([][]byte, error) {
	err := s.listPartition(int(p), nil, func(key []byte, d uint64) bool {
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
// answers with its merged states where they differ; this node merges those.
// Batches are bounded by the anti-entropy rate and in bytes both ways: the
// peer answers only as many keys as fit its own budget, and the rest are
// asked again without this node's states (which the peer already merged).
func (s *Store) exchange(ctx context.Context, peer Member, base message, keys [][]byte, mode syncMode, res *SyncResult, call func(*message) (*message, error)) error {
	// A batch takes at least a tenth of a second at the configured rate, so
	// the throttle shapes the traffic rather than letting one burst through.
	batchKeys := min(256, max(1, s.cfg.AntiEntropy.KeysPerSecond/10))
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
				if raw, err = s.cfg.Storage.Get(s.dataKey(s.ring.Load(), keys[0])); err != nil {
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
		if err := s.aePace.wait(ctx, len(batch), s.cfg.AntiEntropy.KeysPerSecond); err != nil {
			return err
		}
		m := base
		m.Kind, m.Keys, m.States = kindAEExchange, batch, states
		if mode == syncPush {
			m.Flags |= flagPushOnly
		}
		resp, err := call(&m)
		if err != nil {
			return err
		}
		if resp.Kind != kindAEStates || len(resp.States) > len(batch) || (mode != syncPush && len(resp.States) == 0) {
			return fmt.Errorf("%w: bad exchange reply from %s", ErrProtocol, peer.ID)
		}
		got := make([]state, len(resp.States))
		for i, raw := range resp.States {
			if len(raw) == 0 {
				continue
			}
			st, err := decodeState(raw)
			if err != nil {
				return fmt.Errorf("from %s: %w", peer.ID, err)
			}
			got[i] = st
			res.KeysReceived++
		}
		if err := s.mergeAll(batch[:len(got)], got); err != nil {
			return err
		}
		if mode != syncPush {
			again = append(again, batch[len(resp.States):]...)
		}
	}
	return nil
}

// prefixHashes returns x with x[i] the XOR of the hashes of parts[:i].
func (s *Store) prefixHashes(parts []uint32) []uint64 {
	prefix := make([]uint64, len(parts)+1)
	for i, p := range parts {
		prefix[i+1] = prefix[i] ^ s.tree.get(int(p))
	}
	return prefix
}

// listPartition visits, in order, the keys stored in partition p that sort
// after from (all of them for a nil from) with their digests, until fn
// returns false.
func (s *Store) listPartition(p int, from []byte, fn func(key []byte, d uint64) bool) error {
	prefix := make([]byte, 5)
	prefix[0] = spaceData
	binary.BigEndian.PutUint32(prefix[1:], uint32(p))
	err := s.cfg.Storage.ForEach(prefix, func(k, v []byte) error {
		if from != nil && bytes.Compare(k[5:], from) <= 0 {
			return nil
		}
		if !fn(k[5:], digest(k[5:], v)) {
			return errStopIteration
		}
		return nil
	})
	if errors.Is(err, errStopIteration) {
		return nil
	}
	return err
}

// aeParts resolves the partition set of an anti-entropy request.
func (s *Store) aeParts(m *message) ([]uint32, error) {
	if m.Flags&flagPartRuns != 0 {
		return fromRuns(m.Parts, s.cfg.Partitions)
	}
	r := s.ring.Load()
	if m.RingHash != r.fingerprint {
		return nil, fmt.Errorf("%w: ring differs from %s's; retry when membership settles", ErrProtocol, m.Hint)
	}
	return s.sharedPartitions(r, m.Hint), nil
}

// handleAE serves the anti-entropy requests.
func (s *Store) handleAE(m *message) []byte {
	reply := &message{Version: protocolVersion, Cluster: s.wireCluster}
	switch m.Kind {
	case kindAERanges:
		parts, err := s.aeParts(m)
		if err != nil {
			return s.errorMessage(err)
		}
		if len(m.Ranges)%2 != 0 {
			return s.errorMessage(fmt.Errorf("%w: odd range list", ErrProtocol))
		}
		prefix := s.prefixHashes(parts)
		reply.Kind = kindAEHashes
		reply.Hashes = make([]uint64, 0, len(m.Ranges)/2)
		for i := 0; i < len(m.Ranges); i += 2 {
			lo, hi := m.Ranges[i], m.Ranges[i+1]
			if lo > hi || int(hi) > len(parts) {
				return s.errorMessage(fmt.Errorf("%w: range [%d,%d) of %d partitions", ErrProtocol, lo, hi, len(parts)))
			}
			reply.Hashes = append(reply.Hashes, prefix[hi]^prefix[lo])
		}
	case kindAEKeys:
		// List the partitions in order, in a reply bounded in bytes: Got
		// says how many were listed whole; the next one was listed up to
		// the reply's last key. At least one key is listed if any is left.
		reply.Kind = kindAEKeyList
		size := 0
		from := m.Key
		for _, p := range m.Parts {
			if int(p) >= s.cfg.Partitions {
				return s.errorMessage(fmt.Errorf("%w: partition %d of %d", ErrProtocol, p, s.cfg.Partitions))
			}
		}
		for _, p := range m.Parts {
			whole := true
			err := s.listPartition(int(p), from, func(key []byte, d uint64) bool {
				if len(reply.Keys) > 0 && size+len(key)+16 > s.batchBytes {
					whole = false
					return false
				}
				reply.Keys = append(reply.Keys, bytes.Clone(key))
				reply.Hashes = append(reply.Hashes, d)
				size += len(key) + 16
				return true
			})
			if err != nil {
				return s.errorMessage(err)
			}
			if !whole {
				break
			}
			reply.Got++
			from = nil
		}
	case kindAEExchange:
		if len(m.Keys) != len(m.States) {
			return s.errorMessage(fmt.Errorf("%w: %d keys, %d states", ErrProtocol, len(m.Keys), len(m.States)))
		}
		reply.Kind = kindAEStates
		reply.States = make([][]byte, 0, len(m.Keys))
		pushed := make([]state, len(m.Keys))
		for i, k := range m.Keys {
			if err := s.checkKey(k); err != nil {
				return s.errorMessage(err)
			}
			st, err := decodeState(m.States[i])
			if err != nil {
				return s.errorMessage(err)
			}
			pushed[i] = st
		}
		// Merge on a few workers, so the storage's group commit shares the
		// fsyncs; a message of many keys never gets a goroutine per key.
		if err := s.mergeAll(m.Keys, pushed); err != nil {
			return s.errorMessage(err)
		}
		if m.Flags&flagPushOnly != 0 {
			s.noteHandover(m.Hint, m.Keys)
		}
		// Answer with the merged states that differ from what was pushed,
		// as many as fit the byte budget (at least one): the caller asks
		// again for the rest.
		reply.States = reply.States[:0]
		size := 0
		for i, k := range m.Keys {
			if m.Flags&flagPushOnly != 0 {
				break
			}
			raw, err := s.cfg.Storage.Get(s.dataKey(s.ring.Load(), k))
			if err != nil {
				return s.errorMessage(err)
			}
			if bytes.Equal(raw, m.States[i]) {
				raw = nil
			}
			if i > 0 && size+len(k)+len(raw)+16 > s.batchBytes {
				break
			}
			reply.States = append(reply.States, raw)
			size += len(k) + len(raw) + 16
		}
	default:
		return s.errorMessage(fmt.Errorf("%w: unknown message kind %v", ErrProtocol, m.Kind))
	}
	return encodeMessage(reply)
}

// mergeWorkers is how many merges of one message run at once: enough for the
// storage's group commit to share fsyncs, never a goroutine per key.
const mergeWorkers = 16

// mergeAll merges states[i] into this node's state of keys[i], durably, for
// every non-empty state, and returns the errors joined.
func (s *Store) mergeAll(keys [][]byte, states []state) error {
	errs := make([]error, len(keys))
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range min(mergeWorkers, len(keys)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(keys) {
					return
				}
				if !states[i].empty() {
					errs[i] = s.localMerge(keys[i], states[i])
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// toRuns encodes a sorted partition list as [lo, hi) runs: a node's
// partitions are few runs when they are many partitions.
func toRuns(parts []uint32) []uint32 {
	var out []uint32
	for i := 0; i < len(parts); {
		j := i + 1
		for j < len(parts) && parts[j] == parts[j-1]+1 {
			j++
		}
		out = append(out, parts[i], parts[j-1]+1)
		i = j
	}
	return out
}

// fromRuns decodes toRuns, checking the runs are sorted and within q.
func fromRuns(runs []uint32, q int) ([]uint32, error) {
	if len(runs)%2 != 0 {
		return nil, fmt.Errorf("%w: odd partition run list", ErrProtocol)
	}
	var out []uint32
	prev := uint32(0)
	for i := 0; i < len(runs); i += 2 {
		lo, hi := runs[i], runs[i+1]
		if lo >= hi || int(hi) > q || (i > 0 && lo < prev) {
			return nil, fmt.Errorf("%w: bad partition run [%d,%d) of %d", ErrProtocol, lo, hi, q)
		}
		for p := lo; p < hi; p++ {
			out = append(out, p)
		}
		prev = hi
	}
	return out, nil
}
