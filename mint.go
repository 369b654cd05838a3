// mint.go: §4.4 minting a write's version in the coordinator's replica:
// per-key actor epochs, and which of them a node trusts after losing data
// (issue 20, kv679).
package dynamo

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// mint applies a write coordinated by this node to its own replica of
// key, inside one storage update: the new version's dot is minted from the
// stored state and is durable here before any other replica sees it. So a
// crash can never leave a dot on other replicas that this node might issue
// again in the same run; and a restart starts a new run, whose epochs are
// new (see ownActor).
// It returns the new state and its encoding, which the caller replicates.
func (r *replica) mint(p int, key, value []byte, tombstone bool, cvv versionVector, now int64) (state, []byte, error) {
	var (
		next     state
		stored   []byte
		lost     bool // the stored state was damaged and is replaced
		evidence bool // the context shows this node's actor beyond its record
	)
	c := &change{p: p, key: key, fn: func(cur []byte) ([]byte, bool, error) {
		base, damaged := decodeLocal(cur)
		lost, evidence = damaged, false
		if n := concurrentCount(base, cvv) + 1; n > r.limits.MaxSiblings {
			return nil, false, fmt.Errorf("%w: key %q would hold %d siblings, the limit is %d", ErrTooManySiblings, key, n, r.limits.MaxSiblings)
		}
		actor := r.ownActor(key, base)
		if actor != "" && (cvv.get(actor) > base.VV.get(actor) || base.VV.get(actor) >= maxCounter) {
			// Issue 20: the context shows a counter of this node's own actor
			// beyond the local record, so the record lost dots this node
			// issued: they must not be issued again.
			evidence = cvv.get(actor) > base.VV.get(actor)
			actor = ""
		}
		if actor == "" {
			actor = r.freshActor()
		}
		if err := mintable(base, cvv, actor); err != nil {
			return nil, false, err
		}
		next, _ = mint(base, cvv, actor, value, tombstone, now)
		stored = encodeState(next)
		if len(stored) > r.limits.MaxStateSize {
			return nil, false, fmt.Errorf("%w: key %q would hold %d bytes of siblings, the limit is %d", ErrValueTooLarge, key, len(stored), r.limits.MaxStateSize)
		}
		return stored, onlyTombstones(next), nil
	}}
	c.after = func() { r.afterUpdate(key, next, lost, evidence, "a write's context") }
	err := r.update(c)
	return next, stored, err
}

// mergeChange is the change that merges st into key's state durably. A
// damaged stored state is replaced by st (see integrity.go).
func (r *replica) mergeChange(p int, key []byte, st state) *change {
	var (
		lost, evidence bool
		conflicts      int
		merged         state
	)
	c := &change{p: p, key: key}
	c.fn = func(cur []byte) ([]byte, bool, error) {
		old, damaged := decodeLocal(cur)
		lost, evidence = damaged, r.lostEvidence(key, old, st)
		merged, conflicts = syncCount(old, st)
		if sameVersion(merged, old) && cur != nil && !damaged {
			return slices.Clone(cur), onlyTombstones(old), nil
		}
		if err := decodable(merged); err != nil {
			return nil, false, fmt.Errorf("key %q: %w", key, err)
		}
		return encodeState(merged), onlyTombstones(merged), nil
	}
	c.after = func() {
		r.afterUpdate(key, merged, lost, evidence, "a peer's state")
		if conflicts > 0 {
			r.dotConflicts.Add(int64(conflicts))
			r.log.Warn("one version dot carried different versions (a node lost data, or a disk lied): kept them all under dots of their own",
				keyAttr(key), "conflicts", conflicts, "siblings", len(merged.Siblings))
		}
	}
	return c
}

// merge merges st into this node's state of key, durably.
func (r *replica) merge(p int, key []byte, st state) error {
	return r.update(r.mergeChange(p, key, st))
}

// mergeBatch merges states[i] into keys[i] (in partition parts[i]) for
// every non-empty state, in one storage commit where the Storage can, and
// returns the errors joined.
func (r *replica) mergeBatch(parts []int, keys [][]byte, states []state) error {
	var cs []*change
	for i, st := range states {
		if !st.empty() {
			cs = append(cs, r.mergeChange(parts[i], keys[i], st))
		}
	}
	return r.updateBatch(cs)
}

// afterUpdate follows a durable update that stored st for key: it indexes
// the key for folding, and accounts for the loss of this node's record of
// the key when the update replaced a damaged state (lost), or when what it
// merged (from) showed this node's actor beyond the record (evidence).
func (r *replica) afterUpdate(key []byte, st state, lost, evidence bool, from string) {
	r.folds.note(key, st, r.n)
	if lost {
		r.recordLost(key)
	}
	if evidence {
		r.log.Info(from+" shows versions of a key this node issued beyond its record: it writes the key with a new epoch from now on", keyAttr(key))
		r.epochs.distrust(key)
	}
}

// freshActor returns this node's actor with a fresh epoch.
func (r *replica) freshActor() string {
	return r.actor + "." + strconv.FormatUint(r.epochs.fresh(), 36)
}

// ownActor returns the actor this node mints key's next version with: its
// entry in the key's vector with the newest epoch this run trusts for key
// (see runEpochs), or "" when there is none and the caller must take a fresh
// epoch.
func (r *replica) ownActor(key []byte, st state) string {
	prefix := r.actor + "."
	best, bestSeq := "", uint64(0)
	for _, e := range st.VV {
		ep, ok := strings.CutPrefix(e.Actor, prefix)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(ep, 36, 64)
		if err != nil {
			continue
		}
		if seq, ok := r.epochs.trusted(key, n); ok && (best == "" || seq > bestSeq) {
			best, bestSeq = e.Actor, seq
		}
	}
	return best
}

// lostEvidence reports whether in, a peer's state of key, shows a counter of
// one of this node's trusted actors beyond old, this node's record: then the
// record lost dots this node issued (issue 20). This node writes its own
// dots to its record before any peer sees them, so nothing else explains it.
func (r *replica) lostEvidence(key []byte, old, in state) bool {
	prefix := r.actor + "."
	for _, e := range in.VV {
		if !strings.HasPrefix(e.Actor, prefix) || e.Counter <= old.VV.get(e.Actor) {
			continue
		}
		if n, err := strconv.ParseUint(e.Actor[len(prefix):], 36, 64); err == nil {
			if _, ok := r.epochs.trusted(key, n); ok {
				return true
			}
		}
	}
	return false
}
