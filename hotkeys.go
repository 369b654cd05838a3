// hotkeys.go: the hottest keys at a node, by the Space-Saving top-k sketch
// (Metwally, Agrawal and El Abbadi, 2005), shown in Stats.HotKeys.
package dynamo

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// HotKey is one of the keys this node's callers asked for most lately, with
// how often: counts over the current minute and the one before it, each an
// estimate within Error of the truth.
//
// The key is given as its bytes, cut to the first 64: an operator must be
// able to recognize a hot key (a hash could only be matched against keys one
// already suspects), and the cut bounds what Stats holds whatever
// Limits.MaxKeySize is. Keys are application data: an embedder that exports
// Stats beyond its own process (an admin page, logs) should redact them as it
// does its other data, and metrics must never carry them as labels.
type HotKey struct {
	// Key is the key's first 64 bytes, owned by the caller.
	Key []byte `json:"key"`
	// Truncated reports that the key is longer than Key.
	Truncated bool `json:"truncated,omitempty"`
	// Gets and Writes count the Gets, and the Puts and Deletes, of the key
	// since it entered the sketch: they never overstate.
	Gets   int64 `json:"gets"`
	Writes int64 `json:"writes"`
	// Error bounds the requests the sketch may have missed (it counted them
	// for keys it later replaced by this one): the key had between
	// Gets+Writes and Gets+Writes+Error requests.
	Error int64 `json:"error"`
}

const (
	hotKeySlots  = 64          // keys a sketch tracks; any key asked for more than 1/64 of the time is among them
	hotKeyTop    = 10          // keys Stats reports
	hotKeyPrefix = 64          // bytes of a key Stats reports
	hotKeyWindow = time.Minute // a sketch's span; Stats covers the current one and the one before
)

// hotKeys is a Space-Saving sketch of the keys recorded: hotKeySlots
// counters; a key not among them takes over the counter of the least-counted
// key and inherits its count as error. Every key with more than 1/hotKeySlots
// of the requests is guaranteed a counter. Two generations of a window each
// keep it current: a key that cooled off leaves within two windows. The zero
// value is ready to use. Recording costs one map lookup under a mutex and a
// few steps of a min-heap of the counters (a scan of all 64, as the first
// version did, was 2% of a get's CPU).
type hotKeys struct {
	mu    sync.Mutex
	cur   *hotGen
	prev  *hotGen
	start time.Time // when cur began
}

// hotGen is one generation: the counters in a min-heap by estimate, and
// where each key's counter sits in it.
type hotGen struct {
	at   map[string]int
	heap []hotEntry
}

type hotEntry struct {
	key string
	hotCount
}

type hotCount struct {
	gets, writes, err int64
}

func (c *hotCount) total() int64 { return c.gets + c.writes + c.err }

// record counts one request for key, a Get or (write) a Put or Delete.
func (h *hotKeys) record(key []byte, write bool) {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rotate(now)
	g := h.cur
	i, ok := g.at[string(key)]
	if !ok && len(g.heap) < hotKeySlots {
		i = len(g.heap)
		g.heap = append(g.heap, hotEntry{key: string(key)})
		g.at[string(key)] = i
		g.heap[i].count(write)
		g.up(i)
		return
	}
	if !ok {
		// The least-counted key gives up its counter, and its count
		// becomes the newcomer's error.
		i = 0
		delete(g.at, g.heap[0].key)
		g.heap[0] = hotEntry{key: string(key), hotCount: hotCount{err: g.heap[0].total()}}
		g.at[string(key)] = 0
	}
	g.heap[i].count(write)
	g.down(i)
}

func (c *hotCount) count(write bool) {
	if write {
		c.writes++
	} else {
		c.gets++
	}
}

// up moves entry i toward the root while it counts less than its parent.
func (g *hotGen) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if g.heap[p].total() <= g.heap[i].total() {
			return
		}
		g.swap(i, p)
		i = p
	}
}

// down moves entry i toward the leaves while a child counts less.
func (g *hotGen) down(i int) {
	for {
		least := i
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(g.heap) && g.heap[c].total() < g.heap[least].total() {
				least = c
			}
		}
		if least == i {
			return
		}
		g.swap(i, least)
		i = least
	}
}

func (g *hotGen) swap(i, j int) {
	g.heap[i], g.heap[j] = g.heap[j], g.heap[i]
	g.at[g.heap[i].key] = i
	g.at[g.heap[j].key] = j
}

// floor is the most requests a key without a counter may have had: the
// least count, once every counter is taken.
func (g *hotGen) floor() int64 {
	if g == nil || len(g.heap) < hotKeySlots {
		return 0
	}
	return g.heap[0].total()
}

// has reports whether key has a counter in g.
func (g *hotGen) has(key string) bool {
	if g == nil {
		return false
	}
	_, ok := g.at[key]
	return ok
}

// rotate starts a new generation when the current one is a window old; the
// current one becomes the previous, unless it is two windows old (nothing
// was recorded for a window). Callers hold mu.
func (h *hotKeys) rotate(now time.Time) {
	age := now.Sub(h.start)
	if h.cur != nil && age >= 0 && age < hotKeyWindow {
		return
	}
	h.prev = nil
	if h.cur != nil && age >= 0 && age < 2*hotKeyWindow {
		h.prev = h.cur
	}
	h.cur = &hotGen{at: make(map[string]int, hotKeySlots), heap: make([]hotEntry, 0, hotKeySlots)}
	h.start = now
}

// top returns the hotKeyTop keys with the highest estimates over both
// generations, highest first.
func (h *hotKeys) top() []HotKey {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rotate(time.Now())
	// A key missing from a full generation may have had up to that
	// generation's least count there.
	merged := map[string]*hotCount{}
	add := func(g, other *hotGen) {
		if g == nil {
			return
		}
		for _, e := range g.heap {
			sum := merged[e.key]
			if sum == nil {
				sum = &hotCount{}
				merged[e.key] = sum
				if !other.has(e.key) {
					sum.err = other.floor()
				}
			}
			sum.gets += e.gets
			sum.writes += e.writes
			sum.err += e.err
		}
	}
	add(h.cur, h.prev)
	add(h.prev, h.cur)
	out := make([]HotKey, 0, len(merged))
	for k, c := range merged {
		hk := HotKey{Key: []byte(k[:min(len(k), hotKeyPrefix)]), Truncated: len(k) > hotKeyPrefix, Gets: c.gets, Writes: c.writes, Error: c.err}
		out = append(out, hk)
	}
	slices.SortFunc(out, func(a, b HotKey) int {
		if c := cmp.Compare(b.Gets+b.Writes+b.Error, a.Gets+a.Writes+a.Error); c != 0 {
			return c
		}
		return slices.Compare(a.Key, b.Key)
	})
	return out[:min(len(out), hotKeyTop)]
}
