// Static: a fixed, hand-driven member list for tests (§4.8 membership without gossip).

package membership

import (
	"slices"
	"strings"
	"sync"
)

// Static is a Membership whose members and reachability change only when the
// program says so. Tests use it to stage joins, leaves and failures without a
// network. It is safe for concurrent use.
//
// Static detects no failure: a member is reachable until SetReachable says
// otherwise. A dynamo Store layers its own failure detector over it (a peer
// whose calls go unanswered is backed off and probed again), so with a
// static list silent failures still close after one replica timeout.
type Static struct {
	mu        sync.RWMutex
	members   map[string]Member
	reachable map[string]bool
	subs      Notifier
}

var _ Membership = (*Static)(nil)

// NewStatic returns a Static holding members, all of them reachable. When two
// members share an ID, the later one wins.
func NewStatic(members ...Member) *Static {
	s := &Static{
		members:   make(map[string]Member, len(members)),
		reachable: make(map[string]bool, len(members)),
	}
	for _, m := range members {
		s.members[m.ID] = m
		s.reachable[m.ID] = true
	}
	return s
}

// Members returns the members sorted by ID, in a slice the caller owns.
func (s *Static) Members() []Member {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sortedMembers(s.members)
}

// Reachable reports whether the member with this ID is marked up. It is
// false for IDs that are not members.
func (s *Static) Reachable(id string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.reachable[id]
}

// Subscribe returns a channel that receives a value after Members or
// Reachable changes; see Membership.Subscribe. cancel is idempotent and
// does not close the channel.
func (s *Static) Subscribe() (changes <-chan struct{}, cancel func()) {
	return s.subs.Subscribe()
}

// SetReachable marks the member with this ID up or down, as a failure
// detector would. It does nothing for IDs that are not members.
func (s *Static) SetReachable(id string, up bool) {
	s.mu.Lock()
	_, ok := s.members[id]
	changed := ok && s.reachable[id] != up
	if changed {
		s.reachable[id] = up
	}
	s.mu.Unlock()
	if changed {
		s.subs.Notify()
	}
}

// Add puts m in the ring as a reachable member, as a join would. If a
// member with m.ID exists, its address is replaced and it becomes reachable.
func (s *Static) Add(m Member) {
	s.mu.Lock()
	old, ok := s.members[m.ID]
	changed := !ok || old != m || !s.reachable[m.ID]
	s.members[m.ID] = m
	s.reachable[m.ID] = true
	s.mu.Unlock()
	if changed {
		s.subs.Notify()
	}
}

// Remove takes the member with this ID out of the ring, as a leave would.
// It does nothing for IDs that are not members.
func (s *Static) Remove(id string) {
	s.mu.Lock()
	_, ok := s.members[id]
	delete(s.members, id)
	delete(s.reachable, id)
	s.mu.Unlock()
	if ok {
		s.subs.Notify()
	}
}

// sortedMembers returns the map's values sorted by ID in a new slice.
func sortedMembers(m map[string]Member) []Member {
	out := make([]Member, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}
