// converge.go: after healing, hinted handoff, read repair and anti-entropy bring the replicas together, and the checks that they did (§4.6, §4.7, promise 3).
package dynamotest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing/synctest"
	"time"

	"github.com/dynamo-kv/dynamo"
)

// heal removes every fault: network, chaos and skew, and restarts crashed
// nodes. It returns the fake time it finished.
func (s *sim) heal() time.Duration {
	s.healNet()
	s.setChaos(chaos{})
	for _, nd := range s.nodes {
		nd.skew.Store(0)
		if nd.st == nil {
			if err := s.restart(nd); err != nil {
				s.fail(fmt.Errorf("restart %s: %w", nd.id, err))
			}
		}
	}
	synctest.Wait()
	s.logf("healed")
	return s.now()
}

// readResult is one node's read of one key with R=N.
type readResult struct {
	set []int64
	ctx string
	err error
}

// converge lets hinted handoff and anti-entropy run and reads every key from every node with
// R=N (read repair), a round every convergeTick of fake time, until no node
// holds a hint, every node reads the same set and context, and every replica
// holds the same bytes; at most maxConvergeRounds rounds. It returns the last
// round's reads, by node then key.
func (s *sim) converge() ([][]readResult, bool) {
	var res [][]readResult
	for round := 1; round <= maxConvergeRounds; round++ {
		if round > 1 {
			s.advance(convergeTick)
		}
		res = make([][]readResult, len(s.nodes))
		var wg sync.WaitGroup
		for i, nd := range s.nodes {
			res[i] = make([]readResult, len(s.keys))
			for k, key := range s.keys {
				wg.Go(func() {
					if s.cfg.ORSet {
						res[i][k] = s.readFinalSet(nd.st, key)
						return
					}
					sibs, c, err := nd.st.Get(context.Background(), key, dynamo.WithR(s.cfg.N))
					r := readResult{ctx: c.String(), err: err}
					if err == nil {
						o := op{}
						o.observe(sibs)
						r.set = o.observed
						if o.corrupt != nil {
							r.err = o.corrupt
						}
					}
					res[i][k] = r
				})
			}
		}
		wg.Wait()
		synctest.Wait()
		agree, why := s.agreed(res)
		if agree {
			s.logf("converged after %d rounds", round)
			return res, true
		}
		s.logf("round %d: not converged: %s", round, why)
	}
	return res, false
}

// agreed reports whether the cluster has converged, or why not: no node holds
// a hint, every primary of every key holds the same bytes for it, and every
// node read the same thing for every key.
func (s *sim) agreed(res [][]readResult) (bool, string) {
	if id, n := s.pendingHints(); n > 0 {
		return false, fmt.Sprintf("%s holds %d hints", id, n)
	}
	if ok, why := s.replicasAgree(); !ok {
		return false, why
	}
	for k := range s.keys {
		first := res[0][k]
		for i := range s.nodes {
			r := res[i][k]
			switch {
			case r.err != nil:
				return false, fmt.Sprintf("n%d read key %d: %v", i, k, r.err)
			case r.ctx != first.ctx || !slices.Equal(r.set, first.set):
				return false, fmt.Sprintf("n%d and n0 read key %d differently", i, k)
			}
		}
	}
	return true, ""
}

// replicasAgree reports whether every primary of every key holds the same
// bytes for it, or why not.
func (s *sim) replicasAgree() (bool, string) {
	up := s.upNodes()
	if len(up) == 0 {
		return false, "every node is down"
	}
	for k, key := range s.keys {
		var ref []byte
		for j, m := range s.nodes[up[0]].st.PreferenceList(key, s.cfg.N) {
			raw, err := s.stored(m.ID, key)
			if err != nil {
				return false, err.Error()
			}
			if j > 0 && string(raw) != string(ref) {
				return false, fmt.Sprintf("replica %s of key %d differs", m.ID, k)
			}
			ref = raw
		}
	}
	return true, ""
}

// pendingHints returns a node that holds hints for others and how many, or
// "" and 0 when no running node does.
func (s *sim) pendingHints() (string, int) {
	for _, nd := range s.nodes {
		if nd.st == nil {
			continue
		}
		n := 0
		for _, c := range nd.st.Stats().Hints.Pending {
			n += c
		}
		if n > 0 {
			return nd.id, n
		}
	}
	return "", 0
}

// stored returns the bytes node id's disk holds for key: the value under the
// one storage key that ends with key. (The store prefixes its data keys, and
// a node that holds no hints has no other storage key for key.)
func (s *sim) stored(id string, key []byte) ([]byte, error) {
	var nd *node
	for _, n := range s.nodes {
		if n.id == id {
			nd = n
		}
	}
	if nd == nil {
		return nil, fmt.Errorf("replica %s is not a simulated node", id)
	}
	var out []byte
	found := 0
	err := nd.mem.ForEach(nil, func(k, v []byte) error {
		if len(k) > len(key) && string(k[len(k)-len(key):]) == string(key) {
			out = append(out, v...)
			found++
		}
		return nil
	})
	if err == nil && found > 1 {
		err = fmt.Errorf("%s has %d storage keys ending with %s", id, found, key)
	}
	return out, err
}
