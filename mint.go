// mint.go: §4.4 minting a write's version at its coordinator: per-key actor
// epochs, the lease that hands them out, and deduplication of forwarded writes.
package dynamo

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// mintDurably applies a write coordinated by this node to its own replica of
// key, inside one storage update: the new version's dot is minted from the
// stored state and is durable here before any other replica sees it. So a
// crash can never leave a dot on other replicas that this node might issue
// again, and the node keeps its actor across restarts (only lost storage
// takes a new incarnation).
// It returns the new state and its encoding, which the caller replicates.
func (s *Store) mintDurably(key, value []byte, tombstone bool, cvv versionVector, now int64) (state, []byte, error) {
	// A new epoch actor, in case the key needs one. Taken up front, since an
	// epoch costs a counter increment (the lease is durable in blocks) and
	// finding out inside the update that one is needed would cost a second
	// trip through the storage's commit queue: the common case for a new key.
	// An unused epoch is simply skipped.
	epoch, err := s.epochs.next(s)
	if err != nil {
		return state{}, nil, err
	}
	fresh := s.actor + "." + strconv.FormatUint(epoch, 36)
	var next state
	var stored []byte
	err = s.updateData(key, func(cur []byte) ([]byte, bool, error) {
		base, err := decodeState(cur)
		if err != nil {
			return nil, false, err
		}
		if err := s.checkMint(key, base, cvv); err != nil {
			return nil, false, err
		}
		actor := s.ownActor(base)
		if actor == "" {
			actor = fresh
		}
		if err := mintable(base, cvv, actor); err != nil {
			return nil, false, err
		}
		next, _ = mint(base, cvv, actor, value, tombstone, now)
		stored = encodeState(next)
		if len(stored) > s.cfg.Limits.MaxStateSize {
			return nil, false, errStateTooLarge(key, len(stored), s.cfg.Limits.MaxStateSize)
		}
		return stored, onlyTombstones(next), nil
	})
	return next, stored, err
}

// ownActor returns the actor this node mints a key's next version with: its
// own entry in the key's version vector (the newest epoch, if several).
// Counters are per actor and per key, so the actor must know the highest
// counter it has issued for the key; while this node holds the key, its
// entry says so. When it holds nothing (a new key, a purged tombstone, a
// partition it gave away and got back), that history may be gone while other
// replicas still remember it: ownActor returns "" and the caller takes a
// fresh epoch, whose counter 1 no replica can have seen (Riak's fix for
// kv679, per-key epochs).
func (s *Store) ownActor(st state) string {
	if st.empty() {
		return ""
	}
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
	return best
}

// epochLease hands out key epochs, unique for the life of an incarnation.
// Blocks of epochLeaseBlock are reserved durably before use, so a restart
// (clean or not) never reuses one.
type epochLease struct {
	mu    sync.Mutex
	cur   uint64
	limit uint64
}

const epochLeaseBlock = 1 << 16

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
