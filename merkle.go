// merkle.go: §4.7 the hash tree of anti-entropy: one hash per partition kept
// up to date as each write lands (replica.go), whose ranges anti-entropy
// compares, and the compact form of partition sets on the wire.
package dynamo

import (
	"fmt"
	"sync/atomic"

	"github.com/dynamo-kv/dynamo/storage"
)

// hashTree keeps one hash per partition: the XOR of the digests of the
// partition's keys (a key's digest hashes its name and encoded state). XOR
// makes the tree incremental: a write changes its partition's hash by
// old^new digest in O(1), whatever order concurrent writes land in, and any
// range of partitions hashes to the XOR of its partitions, which a prefix
// array gives in O(1). The levels of the Merkle tree (root, ranges,
// partitions, keys) are therefore derived on demand, never rebuilt by scans.
//
// The tree lives in memory. At start-up it is read from a Storage that keeps
// it with its data (storage.Summer: bbolt moves it in each checkpoint, not on
// every write), or else rebuilt by one scan of the data (about a second per
// million keys of 1 KiB); see hashes.go.
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

// digest identifies a key's stored state: zero for an absent key. It is
// storage.Digest, so a Storage that keeps sums (storage.Summer) keeps the
// hash tree's.
func digest(key, enc []byte) uint64 { return storage.Digest(key, enc) }

// hashWords folds b into h eight bytes at a time (storage.HashWords).
func hashWords(h uint64, b []byte) uint64 { return storage.HashWords(h, b) }

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
