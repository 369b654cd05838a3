// Tests of Static, the hand-driven membership used by cluster tests (§4.8).

package membership_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/membership"
)

func TestStatic_Members_SortedCopy(t *testing.T) {
	s := membership.NewStatic(
		membership.Member{ID: "c", Addr: "127.0.0.1:3"},
		membership.Member{ID: "a", Addr: "127.0.0.1:1"},
		membership.Member{ID: "b", Addr: "127.0.0.1:2"},
	)
	got := s.Members()
	require.Equal(t, []membership.Member{
		{ID: "a", Addr: "127.0.0.1:1"},
		{ID: "b", Addr: "127.0.0.1:2"},
		{ID: "c", Addr: "127.0.0.1:3"},
	}, got)

	got[0].ID = "mutated"
	require.Equal(t, "a", s.Members()[0].ID, "the caller owns the returned slice")
	for _, id := range []string{"a", "b", "c"} {
		require.True(t, s.Reachable(id), id)
	}
	require.False(t, s.Reachable("unknown"))
}

func TestStatic_NewStatic_DuplicateIDLaterWins(t *testing.T) {
	s := membership.NewStatic(membership.Member{ID: "a", Addr: "old"}, membership.Member{ID: "a", Addr: "new"})
	require.Equal(t, []membership.Member{{ID: "a", Addr: "new"}}, s.Members())
}

func TestStatic_SetReachable_KeepsMembership(t *testing.T) {
	s := membership.NewStatic(membership.Member{ID: "a"}, membership.Member{ID: "b"})
	s.SetReachable("a", false)
	require.False(t, s.Reachable("a"))
	require.Len(t, s.Members(), 2, "a failed node stays in the ring")
	s.SetReachable("a", true)
	require.True(t, s.Reachable("a"))

	s.SetReachable("ghost", true)
	require.False(t, s.Reachable("ghost"), "SetReachable does not add members")
	require.Len(t, s.Members(), 2)
}

func TestStatic_AddRemove(t *testing.T) {
	s := membership.NewStatic()
	require.Empty(t, s.Members())

	s.Add(membership.Member{ID: "a", Addr: "x"})
	require.Equal(t, []membership.Member{{ID: "a", Addr: "x"}}, s.Members())
	require.True(t, s.Reachable("a"))

	s.SetReachable("a", false)
	s.Add(membership.Member{ID: "a", Addr: "y"})
	require.Equal(t, []membership.Member{{ID: "a", Addr: "y"}}, s.Members(), "Add replaces the address")
	require.True(t, s.Reachable("a"), "Add makes the member reachable")

	s.Remove("a")
	require.Empty(t, s.Members())
	require.False(t, s.Reachable("a"))
	s.Remove("a") // no-op
}

// pending reports whether ch holds a value, draining it.
func pending(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestStatic_Subscribe_NotifiesEachChange(t *testing.T) {
	s := membership.NewStatic(membership.Member{ID: "a"})
	ch, cancel := s.Subscribe()
	defer cancel()

	tests := map[string]struct {
		change func()
		want   bool
	}{
		"add":                  {func() { s.Add(membership.Member{ID: "b"}) }, true},
		"add same again":       {func() { s.Add(membership.Member{ID: "b"}) }, false},
		"down":                 {func() { s.SetReachable("a", false) }, true},
		"down again":           {func() { s.SetReachable("a", false) }, false},
		"up":                   {func() { s.SetReachable("a", true) }, true},
		"unknown reachability": {func() { s.SetReachable("ghost", false) }, false},
		"remove":               {func() { s.Remove("b") }, true},
		"remove unknown":       {func() { s.Remove("b") }, false},
	}
	// Run in a fixed order: each case depends on the state the previous left.
	for _, name := range []string{"add", "add same again", "down", "down again", "up", "unknown reachability", "remove", "remove unknown"} {
		tc := tests[name]
		t.Run(name, func(t *testing.T) {
			tc.change()
			require.Equal(t, tc.want, pending(ch))
		})
	}
}

func TestStatic_Subscribe_CoalescesAndCancels(t *testing.T) {
	s := membership.NewStatic()
	ch1, cancel1 := s.Subscribe()
	ch2, cancel2 := s.Subscribe()
	defer cancel2()

	for _, id := range []string{"a", "b", "c"} {
		s.Add(membership.Member{ID: id}) // never blocks, though nobody reads
	}
	require.True(t, pending(ch1))
	require.False(t, pending(ch1), "three changes coalesce into one value")
	require.True(t, pending(ch2))

	cancel1()
	cancel1() // idempotent
	s.Remove("a")
	require.False(t, pending(ch1), "no deliveries after cancel")
	require.True(t, pending(ch2), "other subscribers still hear")
}
