// mint.go: §4.4 minting a write's version in memory, so the coordinator's own
// durable write runs in parallel with the replicas' instead of before them.
package dynamo

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// mintStripes is the number of independent locks over keys being minted.
const mintStripes = 64

// mintTable serialises mints per key and remembers each minted state until
// the coordinator's own storage holds it. A mint reads the newest state
// minted for its key (or, when none is pending, the stored state), so
// concurrent writes through one coordinator never reuse a counter even while
// their local commits are in flight.
//
// Counters minted in memory are lost if the process crashes before the local
// commit, while a replica may already hold them. New therefore takes a fresh
// incarnation (a new actor) after any unclean stop: the crashed actor's
// counters can never be reissued (DESIGN §2, Riak kv679).
type mintTable struct {
	seed    maphash.Seed
	stripes [mintStripes]mintStripe
}

type mintStripe struct {
	mu      sync.Mutex
	pending map[string]*pendingMint
}

type pendingMint struct{ st state }

func newMintTable() *mintTable {
	t := &mintTable{seed: maphash.MakeSeed()}
	for i := range t.stripes {
		t.stripes[i].pending = map[string]*pendingMint{}
	}
	return t
}

func (t *mintTable) stripe(key []byte) *mintStripe {
	return &t.stripes[maphash.Bytes(t.seed, key)%mintStripes]
}

// mintLocal mints a write of key at this coordinator. It returns the key's new
// state and a token for committed, which the caller runs once the local
// storage holds the state.
func (s *Store) mintLocal(key, value []byte, tombstone bool, cvv versionVector, now int64) (state, *pendingMint, error) {
	sp := s.mints.stripe(key)
	sp.mu.Lock()
	defer sp.mu.Unlock()
	var base state
	if p, ok := sp.pending[string(key)]; ok {
		base = p.st
	} else {
		raw, err := s.cfg.Storage.Get(s.dataKey(s.ring.Load(), key))
		if err != nil {
			return state{}, nil, err
		}
		if base, err = decodeState(raw); err != nil {
			return state{}, nil, err
		}
	}
	if err := s.checkMint(key, base, cvv); err != nil {
		return state{}, nil, err
	}
	actor, err := s.keyActor(base)
	if err != nil {
		return state{}, nil, err
	}
	next, _ := mint(base, cvv, actor, value, tombstone, now)
	if n := len(encodeState(next)); n > s.cfg.Limits.MaxStateSize {
		return state{}, nil, errStateTooLarge(key, n, s.cfg.Limits.MaxStateSize)
	}
	p := &pendingMint{st: next}
	sp.pending[string(key)] = p
	return next, p, nil
}

// committed forgets p once the local storage holds it, unless a newer mint of
// the key (which includes p's version) replaced it.
func (s *Store) committed(key []byte, p *pendingMint) {
	sp := s.mints.stripe(key)
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.pending[string(key)] == p {
		delete(sp.pending, string(key))
	}
}

// keyActor picks the actor that mints this node's next version of a key whose
// local state is st. Counters are per actor and per key, so the actor must
// know the highest counter it has issued for the key. While this node holds
// the key, its own entry in st's vector says so. When it holds nothing (a new
// key, a purged tombstone, a partition it gave away and got back), that
// history may be gone while other replicas still remember it, so it takes a
// fresh actor: the node's incarnation plus a new epoch (Riak's fix for kv679,
// per-key epochs). A fresh epoch starts at counter 1 that no replica can have
// seen.
func (s *Store) keyActor(st state) (string, error) {
	prefix := s.actor + "."
	best := ""
	bestEpoch := uint64(0)
	for _, e := range st.VV {
		if ep, ok := strings.CutPrefix(e.Actor, prefix); ok {
			if n, err := strconv.ParseUint(ep, 36, 64); err == nil && (best == "" || n > bestEpoch) {
				best, bestEpoch = e.Actor, n
			}
		}
	}
	if best != "" && !st.empty() {
		return best, nil
	}
	epoch, err := s.epochs.next(s)
	if err != nil {
		return "", err
	}
	return prefix + strconv.FormatUint(epoch, 36), nil
}

// epochLease hands out key epochs, unique for the life of an incarnation.
// Blocks of epochLeaseBlock are reserved durably before use, so a restart
// (clean or not) never reuses one.
type epochLease struct {
	mu    sync.Mutex
	cur   uint64
	limit uint64
	used  atomic.Uint64
}

const epochLeaseBlock = 4096

var metaEpochLease = []byte("mepochs")

// next returns an epoch never handed out before by this incarnation.
func (l *epochLease) next(s *Store) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur >= l.limit {
		var start uint64
		err := s.cfg.Storage.Update(metaEpochLease, func(cur []byte) ([]byte, error) {
			start = 0
			if len(cur) == 8 {
				start = binary.BigEndian.Uint64(cur)
			} else if cur != nil {
				return nil, fmt.Errorf("%w: epoch lease of %d bytes", ErrCorrupt, len(cur))
			}
			return binary.BigEndian.AppendUint64(nil, start+epochLeaseBlock), nil
		})
		if err != nil {
			return 0, fmt.Errorf("dynamo: reserve key epochs: %w", err)
		}
		l.cur, l.limit = start, start+epochLeaseBlock
	}
	e := l.cur
	l.cur++
	l.used.Add(1)
	return e, nil
}

// dedupe remembers recently coordinated forwarded writes by request ID, so a
// request the network delivers twice is applied once: a second delivery
// waits for the first and gets its reply.
type dedupe struct {
	mu     sync.Mutex
	flight map[uint64]*flight
	order  []dedupeEntry
}

type flight struct {
	done  chan struct{}
	reply []byte
}

type dedupeEntry struct {
	id      uint64
	expires time.Time
}

const dedupeMax = 1 << 16

// begin returns the flight for id and whether the caller is the first to
// run it. The first caller must call end.
func (d *dedupe) begin(id uint64, ttl time.Duration) (*flight, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	for len(d.order) > 0 && (now.After(d.order[0].expires) || len(d.order) > dedupeMax) {
		delete(d.flight, d.order[0].id)
		d.order = d.order[1:]
	}
	if f, ok := d.flight[id]; ok {
		return f, false
	}
	f := &flight{done: make(chan struct{})}
	if d.flight == nil {
		d.flight = map[uint64]*flight{}
	}
	d.flight[id] = f
	d.order = append(d.order, dedupeEntry{id, now.Add(ttl)})
	return f, true
}

func (d *dedupe) end(f *flight, reply []byte) {
	f.reply = reply
	close(f.done)
}
