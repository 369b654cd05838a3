// mint.go: §4.4 minting a write's version in memory, so the coordinator's own
// durable write runs in parallel with the replicas' instead of before them.
package dynamo

import (
	"hash/maphash"
	"sync"
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
	next, _ := mint(base, cvv, s.actor, value, tombstone, now)
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
