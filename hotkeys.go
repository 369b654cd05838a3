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
// value is ready to use. Recording costs one map lookup under a mutex, plus a
// scan of the counters when a new key replaces the least-counted one.
type hotKeys struct {
	mu    sync.Mutex
	cur   map[string]*hotCount
	prev  map[string]*hotCount
	start time.Time // when cur began
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
	c := h.cur[string(key)]
	if c == nil {
		c = &hotCount{}
		if len(h.cur) >= hotKeySlots {
			victim, least := leastCounted(h.cur)
			delete(h.cur, victim)
			c.err = least
		}
		h.cur[string(key)] = c
	}
	if write {
		c.writes++
	} else {
		c.gets++
	}
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
	h.cur = make(map[string]*hotCount, hotKeySlots)
	h.start = now
}

// leastCounted returns the key of m with the smallest estimate, and that
// estimate (0 for a map with free counters).
func leastCounted(m map[string]*hotCount) (string, int64) {
	var key string
	least := int64(-1)
	for k, c := range m {
		if t := c.total(); least < 0 || t < least {
			key, least = k, t
		}
	}
	return key, max(least, 0)
}

// top returns the hotKeyTop keys with the highest estimates over both
// generations, highest first.
func (h *hotKeys) top() []HotKey {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rotate(time.Now())
	// A key missing from a full generation may have had up to that
	// generation's least count there.
	floor := func(m map[string]*hotCount) int64 {
		if len(m) < hotKeySlots {
			return 0
		}
		_, least := leastCounted(m)
		return least
	}
	curFloor, prevFloor := floor(h.cur), floor(h.prev)
	merged := map[string]*hotCount{}
	add := func(m map[string]*hotCount, otherFloor int64, other map[string]*hotCount) {
		for k, c := range m {
			sum := merged[k]
			if sum == nil {
				sum = &hotCount{}
				merged[k] = sum
				if _, ok := other[k]; !ok {
					sum.err = otherFloor
				}
			}
			sum.gets += c.gets
			sum.writes += c.writes
			sum.err += c.err
		}
	}
	add(h.cur, prevFloor, h.prev)
	add(h.prev, curFloor, h.cur)
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
