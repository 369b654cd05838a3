// Memtable: the in-memory table of changes that are in the log but not yet checkpointed into bbolt.
package bolt

import (
	"bytes"
	"slices"
	"sort"
)

// memNode is one key of a memtable. value is the key's latest value, or nil
// when the latest change deleted it (so the table hides bbolt's older
// value); a stored empty value is a non-nil empty slice. The bytes of key
// and value are never modified once published, so a reader may keep the
// slices; the value field itself changes (under the Store's memMu) when the
// key changes again.
type memNode struct {
	key   []byte
	value []byte
}

// memtable maps keys to their latest value. Writes only touch a map and
// append to a list; key order, which only scans and checkpoints need, is
// kept lazily: sorted holds nodes in key order, unsorted the nodes added
// since sorted was last merged. (A skip list paid a chain of cache misses
// on every write, 10% of a put's CPU in dynamo-bench.) It is not safe for
// concurrent use; the Store guards it with memMu, and a frozen table (the
// one being checkpointed) is not written.
type memtable struct {
	index    map[string]*memNode
	sorted   []*memNode
	unsorted []*memNode
}

func newMemtable() *memtable {
	return &memtable{index: make(map[string]*memNode)}
}

// mergeAfter is how many unsorted nodes a scan tolerates (and searches
// linearly) before it asks for them to be merged into sorted.
const mergeAfter = 256

// get returns key's node, or nil when the table holds no change of key.
func (m *memtable) get(key []byte) *memNode {
	return m.index[string(key)]
}

// put records value (nil: deleted) as key's latest value. The table takes
// ownership of key and value.
func (m *memtable) put(key, value []byte) {
	if n := m.index[string(key)]; n != nil {
		n.value = value
		return
	}
	n := &memNode{key: key, value: value}
	m.index[string(key)] = n
	m.unsorted = append(m.unsorted, n)
}

func (m *memtable) empty() bool { return len(m.index) == 0 }

// needsMerge reports whether a scan should call merge first.
func (m *memtable) needsMerge() bool { return len(m.unsorted) > mergeAfter }

// merge moves the unsorted nodes into sorted. The caller holds memMu
// exclusively.
func (m *memtable) merge() {
	if len(m.unsorted) == 0 {
		return
	}
	m.sorted = mergeNodes(m.sorted, sortNodes(m.unsorted))
	m.unsorted = nil
}

// ordered returns every node in key order, in a new slice, without
// changing the table.
func (m *memtable) ordered() []*memNode {
	return mergeNodes(m.sorted, sortNodes(slices.Clone(m.unsorted)))
}

// collect appends to dst the entry of every key that starts with prefix, in
// key order.
func (m *memtable) collect(dst []memEntry, prefix []byte) []memEntry {
	i := sort.Search(len(m.sorted), func(i int) bool { return bytes.Compare(m.sorted[i].key, prefix) >= 0 })
	var tail []*memNode
	for _, n := range m.unsorted {
		if bytes.HasPrefix(n.key, prefix) {
			tail = append(tail, n)
		}
	}
	sortNodes(tail)
	for {
		inSorted := i < len(m.sorted) && bytes.HasPrefix(m.sorted[i].key, prefix)
		switch {
		case inSorted && (len(tail) == 0 || bytes.Compare(m.sorted[i].key, tail[0].key) < 0):
			dst = append(dst, memEntry{m.sorted[i].key, m.sorted[i].value})
			i++
		case len(tail) > 0:
			dst = append(dst, memEntry{tail[0].key, tail[0].value})
			tail = tail[1:]
		default:
			return dst
		}
	}
}

// memEntry is a key and the value it had when it was read from a memtable.
type memEntry struct {
	key, value []byte
}

func sortNodes(ns []*memNode) []*memNode {
	slices.SortFunc(ns, func(a, b *memNode) int { return bytes.Compare(a.key, b.key) })
	return ns
}

// mergeNodes merges two key-ordered lists of distinct keys into a new one.
func mergeNodes(a, b []*memNode) []*memNode {
	out := make([]*memNode, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if bytes.Compare(a[0].key, b[0].key) < 0 {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	out = append(out, a...)
	return append(out, b...)
}
