// The reconnect loop: rejoining ring members memberlist has given up on, so that partitions heal (§4.8).

package gossip

import (
	"cmp"
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	// maxReconnectsPerRound bounds the joins one round of the reconnect
	// loop starts; they run in parallel.
	maxReconnectsPerRound = 3
	// maxBackoffRounds bounds the rounds between two joins of one target.
	maxBackoffRounds = 8
)

// seedsKey names the seeds as a reconnect target; members are "member <ID>".
const seedsKey = "seeds"

// reconnectTarget is what one join of the reconnect loop contacts: a ring
// member at its gossip address, or the seeds.
type reconnectTarget struct {
	key   string   // names the target across rounds
	addrs []string // passed to memberlist's Join
}

// retryState is the backoff of one target.
type retryState struct {
	addrs string // the addresses it had; new ones start the backoff over
	skip  int    // rounds to let pass before the next join
	delay int    // rounds from the last join to the next, 1 to maxBackoffRounds
	last  uint64 // round of the last join; 0 for none yet
}

// retrier picks, each round, the targets to join: those whose backoff has
// run out, at most a given number, the ones joined longest ago first. A
// target is joined at once when it appears, then after 1, 2, 4 and from then
// on every maxBackoffRounds rounds, for as long as it is a target (it stops
// being one when memberlist holds it alive again). It does no I/O and has no
// lock; the reconnect loop owns it. The zero value is ready.
type retrier struct {
	round uint64
	state map[string]*retryState
}

// next starts a round with the given targets, forgets the backoff of any
// other, and returns at most limit targets to join now.
func (r *retrier) next(targets []reconnectTarget, limit int) []reconnectTarget {
	r.round++
	if r.state == nil {
		r.state = make(map[string]*retryState)
	}
	current := make(map[string]bool, len(targets))
	var due []reconnectTarget
	for _, t := range targets {
		current[t.key] = true
		addrs := strings.Join(t.addrs, ",")
		s := r.state[t.key]
		if s == nil || s.addrs != addrs {
			s = &retryState{addrs: addrs}
			r.state[t.key] = s
		}
		if s.skip > 0 {
			s.skip--
			continue
		}
		due = append(due, t)
	}
	maps.DeleteFunc(r.state, func(key string, _ *retryState) bool { return !current[key] })
	slices.SortFunc(due, func(a, b reconnectTarget) int {
		return cmp.Or(cmp.Compare(r.state[a.key].last, r.state[b.key].last), strings.Compare(a.key, b.key))
	})
	due = due[:min(len(due), limit)]
	for _, t := range due {
		s := r.state[t.key]
		s.delay = min(max(2*s.delay, 1), maxBackoffRounds)
		s.skip = s.delay - 1
		s.last = r.round
	}
	return due
}

// reconnectLoop runs a reconnect round every interval until stop begins.
func (g *Gossip) reconnectLoop(interval time.Duration) {
	defer g.loop.Done()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var r retrier
	for {
		select {
		case <-g.quit:
			return
		case <-ticker.C:
		}
		g.reconnect(&r)
	}
}

// reconnect runs one round: it joins the targets due and waits for the
// joins, each bounded by memberlist's TCP timeout.
func (g *Gossip) reconnect(r *retrier) {
	due := r.next(g.reconnectTargets(), maxReconnectsPerRound)
	if len(due) == 0 {
		return
	}
	var wg sync.WaitGroup
	g.life.Lock()
	if g.stopping {
		g.life.Unlock()
		return
	}
	for _, t := range due {
		wg.Go(func() {
			n, err := g.ml.Join(t.addrs)
			if err != nil || n == 0 {
				// A dead member is retried quietly; a node alone, whose
				// seeds do not answer, is worth an operator's eye.
				level := slog.LevelDebug
				if t.key == seedsKey {
					level = slog.LevelWarn
				}
				g.logger.Log(context.Background(), level, "membership: reconnect failed", "target", t.key, "addrs", t.addrs, "err", err)
				return
			}
			g.logger.Info("membership: reconnected", "target", t.key, "addrs", t.addrs)
		})
	}
	g.life.Unlock()
	wg.Wait()
}

// reconnectTargets returns the ring members, other than this node and not
// left, that memberlist does not hold alive and whose gossip address is
// known; and the seeds, when memberlist holds no other node alive.
func (g *Gossip) reconnectTargets() []reconnectTarget {
	g.mu.Lock()
	defer g.mu.Unlock()
	own := g.self.GossipAddr
	var out []reconnectTarget
	for _, e := range g.view.records {
		if e.Left || e.ID == g.id || e.GossipAddr == "" || e.GossipAddr == own {
			continue
		}
		if _, alive := g.view.alive[e.ID]; alive {
			continue
		}
		out = append(out, reconnectTarget{key: "member " + e.ID, addrs: []string{e.GossipAddr}})
	}
	if len(g.seeds) == 0 {
		return out
	}
	for id := range g.view.alive {
		if id != g.id {
			return out
		}
	}
	seeds := slices.DeleteFunc(slices.Clone(g.seeds), func(s string) bool { return s == own })
	if len(seeds) > 0 {
		out = append(out, reconnectTarget{key: seedsKey, addrs: seeds})
	}
	return out
}
