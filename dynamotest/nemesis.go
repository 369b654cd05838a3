// nemesis.go: the seeded fault schedule: partitions, bridges, chaos, crashes, amnesia, restarts and clock skew (§4.6); data loss in loss.go.
package dynamotest

import (
	"fmt"
	"time"
)

// Bounds of the nemesis's faults. A network fault, a chaos setting or a crash
// expires at the first step that begins faultTTL after it, and a step lasts
// at most 3s (three Modify attempts of a read and a write, or a pause): so a
// hint is delivered within faultTTL+3s plus the handoff backoff, which the
// tombstone grace must exceed.
const (
	faultTTL     = 2 * time.Second
	maxSkew      = 2 * time.Second
	maxJitter    = 30 * time.Millisecond
	maxDrop      = 0.2
	maxDropReply = 0.1
	maxDup       = 0.2
)

// nemesis draws one fault action from the seeded source and applies it. Only
// the simulation's goroutine calls it, between steps.
func (s *sim) nemesis() {
	n := len(s.nodes)
	up, down := s.upNodes(), s.downNodes()
	maxDown := min(2, n-1)
	if s.heavy() && s.rng.IntN(3) == 0 {
		s.nemesisDone(s.lossNemesis())
		return
	}
	var desc string
	if s.cfg.LargeValues && s.rng.IntN(8) == 0 {
		desc = s.largeValues()
		s.faultCount++
		s.logf("nemesis: %s", desc)
		s.decide("nemesis " + desc)
		return
	}
	switch pick := s.rng.IntN(100); {
	case pick < 5:
		s.calm()
		desc = "calm: heal, restart and let hints drain"
	case pick < 10:
		d := time.Duration(1+s.rng.IntN(4)) * 500 * time.Millisecond
		s.advance(d)
		desc = fmt.Sprintf("pause %v", d)
	case pick < 14:
		s.healNet()
		s.setChaos(chaos{})
		desc = "heal network"
	case pick < 25 && n > 1:
		perm := s.rng.Perm(n)
		cut := 1 + s.rng.IntN(n-1)
		a, b := s.addrs(perm[:cut]), s.addrs(perm[cut:])
		s.faultNet()
		s.net.Partition(a, b)
		desc = fmt.Sprintf("partition %v | %v", a, b)
	case pick < 33:
		i := s.rng.IntN(n)
		s.faultNet()
		s.net.Isolate(s.nodes[i].id)
		desc = "isolate " + s.nodes[i].id
	case pick < 42 && n > 2:
		perm := s.rng.Perm(n)
		bridge := perm[0]
		cut := 1 + s.rng.IntN(n-2)
		a, b := perm[1:1+cut], perm[1+cut:]
		s.faultNet()
		for _, i := range a {
			for _, j := range b {
				s.net.Block(s.nodes[i].id, s.nodes[j].id)
				s.net.Block(s.nodes[j].id, s.nodes[i].id)
			}
		}
		desc = fmt.Sprintf("bridge %v <%s> %v", s.addrs(a), s.nodes[bridge].id, s.addrs(b))
	case pick < 47 && n > 1:
		i := s.rng.IntN(n)
		j := (i + 1 + s.rng.IntN(n-1)) % n
		s.faultNet()
		s.net.Block(s.nodes[i].id, s.nodes[j].id)
		desc = fmt.Sprintf("block %s -> %s", s.nodes[i].id, s.nodes[j].id)
	case pick < 59:
		c := chaos{
			drop:      s.rng.Float64() * maxDrop,
			dropReply: s.rng.Float64() * maxDropReply,
			dup:       s.rng.Float64() * maxDup,
			jitter:    time.Duration(s.rng.Int64N(int64(maxJitter))),
		}
		s.setChaos(c)
		desc = "chaos " + c.String()
	case pick < 65:
		s.setChaos(chaos{})
		desc = "chaos off"
	case pick < 75 && len(down) < maxDown && len(up) > 0:
		nd := s.nodes[up[s.rng.IntN(len(up))]]
		s.stop(nd)
		desc = "crash " + nd.id + " keeping its storage"
	case pick < 78 && len(down) < maxDown && len(up) > 0 && !s.amnesiaUsed && s.cfg.W >= 2 && s.lossAllowed():
		nd := s.nodes[up[s.rng.IntN(len(up))]]
		s.stop(nd)
		nd.amnesiac = true
		s.amnesiaUsed = true
		s.recordLoss()
		desc = "crash " + nd.id + " losing its storage"
	case pick < 90 && len(down) > 0:
		nd := s.nodes[down[s.rng.IntN(len(down))]]
		if err := s.restart(nd); err != nil {
			s.fail(fmt.Errorf("restart %s: %w", nd.id, err))
		}
		desc = "restart " + nd.id
	case pick < 100:
		nd := s.nodes[s.rng.IntN(n)]
		skew := time.Duration(s.rng.Int64N(int64(2*maxSkew))) - maxSkew
		nd.skew.Store(int64(skew))
		desc = fmt.Sprintf("skew %s clock by %v", nd.id, skew)
	default:
		desc = "nothing"
	}
	s.nemesisDone(desc)
}

// nemesisDone counts and records the nemesis action desc.
func (s *sim) nemesisDone(desc string) {
	s.faultCount++
	s.logf("nemesis: %s", desc)
	s.decide("nemesis " + desc)
}

// addrs returns the nodes' addresses.
func (s *sim) addrs(idx []int) []string {
	out := make([]string, len(idx))
	for k, i := range idx {
		out[k] = s.nodes[i].id
	}
	return out
}

// upNodes and downNodes return the indices of running and crashed nodes.
func (s *sim) upNodes() []int {
	var out []int
	for i, nd := range s.nodes {
		if nd.st != nil {
			out = append(out, i)
		}
	}
	return out
}

func (s *sim) downNodes() []int {
	var out []int
	for i, nd := range s.nodes {
		if nd.st == nil {
			out = append(out, i)
		}
	}
	return out
}

// calm heals the network, restarts crashed nodes and lets fake time pass
// until hinted handoff and anti-entropy have had their chance, so the steps
// that follow run on a quiet, often synced cluster (until the next fault),
// where the checker knows which writes a Delete saw.
func (s *sim) calm() {
	s.healNet()
	s.setChaos(chaos{})
	for _, i := range s.downNodes() {
		if err := s.restart(s.nodes[i]); err != nil {
			s.fail(fmt.Errorf("restart %s: %w", s.nodes[i].id, err))
		}
	}
	s.advance(handoffBackoff + 2*handoffEvery)
}

// faultNet clears the network's reachability faults before a new one is
// applied, and starts its lifetime.
func (s *sim) faultNet() {
	s.net.Heal()
	s.netFault, s.netFaultAt = true, s.now()
}

// healNet removes the network's reachability faults.
func (s *sim) healNet() {
	s.net.Heal()
	s.netFault = false
}

// setChaos switches random message faults (the zero chaos: off).
func (s *sim) setChaos(c chaos) {
	s.faults.set(c)
	s.chaosOn, s.chaosAt = c != (chaos{}), s.now()
}

// expire ends the faults that have lasted faultTTL: it heals the network,
// switches chaos off and restarts the nodes crashed that long ago. What it
// does depends only on fake time, so it replays with the seed.
func (s *sim) expire() {
	now := s.now()
	if s.netFault && now-s.netFaultAt >= faultTTL {
		s.healNet()
		s.logf("nemesis: network fault expired")
		s.decide("expire network")
	}
	if s.chaosOn && now-s.chaosAt >= faultTTL {
		s.setChaos(chaos{})
		s.logf("nemesis: chaos expired")
		s.decide("expire chaos")
	}
	for _, i := range s.downNodes() {
		nd := s.nodes[i]
		if now-nd.downAt < faultTTL {
			continue
		}
		if err := s.restart(nd); err != nil {
			s.fail(fmt.Errorf("restart %s: %w", nd.id, err))
		}
		s.logf("nemesis: crash of %s expired: restarted", nd.id)
		s.decide("expire crash " + nd.id)
	}
}
