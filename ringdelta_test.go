// ringdelta_test.go: a ring derived after a join or leave equals the ring
// built afresh (§4.2).
package dynamo

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func requireSameRing(t *testing.T, want, got *ring, msg string) {
	t.Helper()
	require.Equal(t, want.members, got.members, msg)
	require.Equal(t, want.keep, got.keep, msg)
	require.Equal(t, want.fingerprint, got.fingerprint, msg)
	require.Equal(t, want.index, got.index, msg)
	require.Equal(t, want.zones, got.zones, msg)
	require.True(t, slices.Equal(want.prefs, got.prefs), "%s: preference lists differ", msg)
}

// Random walks of joins and leaves (and other changes: two at once, an
// address change, a ring smaller than the stored lists, zones): every
// derived ring equals the ring built from scratch.
func TestNextRing_EqualsFreshBuild(t *testing.T) {
	const partitions, keep = 512, 8
	for seed := range uint64(6) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			next := 0
			member := func() Member {
				next++
				return Member{ID: fmt.Sprintf("node-%d-%03d", rng.IntN(1000), next), Addr: fmt.Sprint("a", next)}
			}
			var ms []Member
			for range 3 + rng.IntN(20) {
				ms = append(ms, member())
			}
			cur := newRing(ms, partitions, keep)
			for step := range 60 {
				switch op := rng.IntN(10); {
				case op < 4 || len(ms) < 2:
					ms = append(ms, member())
				case op < 8:
					i := rng.IntN(len(ms))
					ms = slices.Delete(ms, i, i+1)
				case op == 8 && len(ms) > 0:
					ms[rng.IntN(len(ms))].Addr += "'" // same IDs, a new address
				default:
					ms = append(ms, member(), member()) // two at once
				}
				got := nextRing(cur, ms, partitions, keep)
				requireSameRing(t, newRing(ms, partitions, keep), got, fmt.Sprintf("step %d, %d members", step, len(ms)))
				cur = got
			}
		})
	}
}

// Zones, a new partition count or a first ring build afresh, and still
// equal a fresh build.
func TestNextRing_FallsBackToFullBuild(t *testing.T) {
	ms := rgMembers(12)
	base := newRing(ms, 256, 8)
	zoned := slices.Clone(ms)
	for i := range zoned {
		zoned[i].Zone = fmt.Sprint("z", i%3)
	}
	requireSameRing(t, newRing(zoned, 256, 8), nextRing(base, zoned, 256, 8), "zones")
	requireSameRing(t, newRing(ms, 128, 8), nextRing(base, ms, 128, 8), "partitions")
	requireSameRing(t, newRing(ms, 256, 8), nextRing(nil, ms, 256, 8), "no old ring")
	requireSameRing(t, newRing(ms[:5], 256, 8), nextRing(newRing(ms[:6], 256, 8), ms[:5], 256, 8), "fewer members than the lists")
	requireSameRing(t, newRing(nil, 256, 8), nextRing(base, nil, 256, 8), "no members")
}

func BenchmarkRing_Next(b *testing.B) {
	ms := rgMembers(101)
	full := newRing(ms[:100], DefaultPartitions, rgKeep)
	b.Run("join", func(b *testing.B) {
		for b.Loop() {
			nextRing(full, ms, DefaultPartitions, rgKeep)
		}
	})
	b.Run("leave", func(b *testing.B) {
		for b.Loop() {
			nextRing(full, ms[1:100], DefaultPartitions, rgKeep)
		}
	})
}

// sharedByPeer finds, in one pass, exactly the partitions where both nodes
// are among the first N: the naive check of every partition for every peer
// agrees, with and without zones, and with fewer members than N.
func TestSharedByPeer_MatchesNaive(t *testing.T) {
	for _, n := range []int{2, 3, 12} {
		for _, zoned := range []bool{false, true} {
			ms := rgMembers(n)
			if zoned {
				for i := range ms {
					ms[i].Zone = fmt.Sprint("z", i%3)
				}
			}
			r := newRing(ms, 256, min(rgKeep, n))
			for _, me := range ms {
				got := sharedByPeer(r, me.ID, DefaultN)
				for _, peer := range ms {
					var want []uint32
					for p := range r.partitions {
						if peer.ID != me.ID && r.isPrimary(p, r.index[me.ID], DefaultN) && r.isPrimary(p, r.index[peer.ID], DefaultN) {
							want = append(want, uint32(p))
						}
					}
					require.Equal(t, want, got[peer.ID], "n=%d zoned=%v %s with %s", n, zoned, me.ID, peer.ID)
				}
			}
		}
	}
}
