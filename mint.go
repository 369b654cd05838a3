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
// stored state. cd is the context's dot, if any (DESIGN §2.1; zero for
// none). It returns the new state, its encoding, which the caller
// replicates, and the new version's dot.
func (r *replica) mint(p int, key, value []byte, tombstone bool, cvv versionVector, cd dot, now int64) (state, []byte, dot, error) {
	return r.mintStaged(p, key, value, tombstone, cvv, cd, now, nil)
}

// mintStaged is mint, and calls staged (if not nil) with the new state and
// its encoding as soon as the Storage has settled them (storage.Stager),
// before they are durable here, so that the caller can replicate them
// while this node's commit is fsynced. A dot that other replicas may see
// is never issued again by this node: every later update of the key runs
// after this one's commit and sees the dot; if that commit fails, the
// Storage fails every later update (the Stager contract), and a restart
// starts a new run, whose epochs are new (see ownActor). With a Storage that cannot
// tell, staged is not called, and the caller replicates once mintStaged
// returns, the new state durable here.
func (r *replica) mintStaged(p int, key, value []byte, tombstone bool, cvv versionVector, cd dot, now int64, staged func(state, []byte)) (state, []byte, dot, error) {
	var (
		next     state
		stored   []byte
		minted   dot
		lost     bool // the stored state was damaged and is replaced
		evidence bool // the context shows this node's actor beyond its record
	)
	seen := cvv // every counter the context names, for the checks below
	if cd.Counter != 0 {
		seen = cvv.with(cd.Actor, cd.Counter)
	}
	c := &change{p: p, key: key, fn: func(cur []byte) ([]byte, bool, error) {
		base, damaged := decodeLocal(cur)
		lost, evidence = damaged, false
		if n := concurrentCount(base, cvv, cd) + 1; n > r.limits.MaxSiblings {
			return nil, false, fmt.Errorf("%w: key %q would hold %d siblings, the limit is %d", ErrTooManySiblings, key, n, r.limits.MaxSiblings)
		}
		actor := r.ownActor(key, base)
		if actor != "" && (seen.get(actor) > base.VV.get(actor) || base.VV.get(actor) >= maxCounter) {
			// Issue 20: the context shows a counter of this node's own actor
			// beyond the local record, so the record lost dots this node
			// issued: they must not be issued again.
			evidence = seen.get(actor) > base.VV.get(actor)
			actor = ""
		}
		if actor == "" {
			actor = r.freshActor()
		}
		if err := mintable(base, seen, actor); err != nil {
			return nil, false, err
		}
		next, minted = mintDotted(base, cvv, cd, actor, value, tombstone, now)
		stored = encodeState(next)
		if len(stored) > r.limits.MaxStateSize {
			return nil, false, fmt.Errorf("%w: key %q would hold %d bytes of siblings, the limit is %d", ErrValueTooLarge, key, len(stored), r.limits.MaxStateSize)
		}
		return stored, onlyTombstones(next), nil
	}}
	c.after = func() { r.afterUpdate(key, next, lost, evidence, "a write's context") }
	wasStaged := false
	if staged != nil {
		c.staged = func() {
			wasStaged = true
			staged(next, stored)
		}
	}
	err := r.update(c)
	if err != nil && wasStaged {
		// Other replicas may hold the dot this failed commit does not. The
		// Storage now refuses every update (storage.Stager), so no write
		// of this run mints from the state before it; distrusting the
		// epoch as well keeps the dot unique should it not.
		r.epochs.distrust(key)
	}
	return next, stored, minted, err
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
// record lost dots this node issued (issue 20). A peer may hold a dot
// before it is durable here (mintStaged), but every update of the key that
// runs after the one that minted it sees it, unless that commit failed, so
// nothing else explains it.
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
