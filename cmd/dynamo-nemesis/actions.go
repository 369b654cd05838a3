// actions.go: the seeded nemesis: its fault actions (kills, stops,
// restarts, partitions), the schedule that draws them, and healing.

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"time"
)

// action is one kind of nemesis step.
type action int

const (
	actPartition action = iota
	actKill
	actStop
	actHeal
)

var actionNames = map[string]action{"partition": actPartition, "kill": actKill, "stop": actStop, "heal": actHeal}

// parseFaults parses -faults into the nemesis's deck.
func parseFaults(s string) ([]action, error) {
	var deck []action
	for _, name := range splitList(s) {
		a, ok := actionNames[name]
		if !ok {
			return nil, fmt.Errorf("-faults: unknown kind %q (want partition, kill, stop or heal)", name)
		}
		if !slices.Contains(deck, a) {
			deck = append(deck, a)
		}
	}
	if len(deck) == 0 {
		return nil, errors.New("-faults is empty")
	}
	return deck, nil
}

// nemesis runs the seeded fault schedule until ctx ends: every Interval or
// so (uniform in [Interval/2, 3·Interval/2]) the next action of a shuffled
// deck of {partition, kill, stop, heal} (or the kinds -faults names); killed nodes restart 1 to 4 s later
// on the same data directory, stopped ones continue 0.5 to 3 s later. At most
// (nodes-1)/2 nodes are down or stopped at once. Every choice comes from one
// math/rand/v2 source seeded with Seed.
func (c *controller) nemesis(ctx context.Context, exe string) error {
	cfg := c.cfg
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6e656d65736973))
	maxFaulty := max(1, (cfg.Nodes-1)/2)
	between := func() time.Duration {
		return cfg.Interval/2 + time.Duration(rng.Int64N(int64(cfg.Interval)+1))
	}
	var deck []action
	next := time.Now().Add(between())
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	const maxSteps = 1 << 20 // bounded; the ticker and ctx end it far sooner
	for step := 0; step < maxSteps; step++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		now := time.Now()
		for _, p := range c.procs {
			p.mu.Lock()
			st, restartAt, contAt := p.state, p.restartAt, p.contAt
			p.mu.Unlock()
			switch {
			case st == stateDown && now.After(restartAt):
				if restartAt.IsZero() {
					c.logf("%s CRASHED: %v; restarting it", p.id, p.unexpectedExits())
				}
				if err := c.startProc(exe, p); err != nil {
					return err
				}
				c.faults.Restarts.Add(1)
				c.logf("restart %s (block %v)", p.id, c.blockList(p.idx))
			case st == stateStopped && now.After(contAt):
				if err := p.signal(syscall.SIGCONT); err != nil {
					return fmt.Errorf("SIGCONT %s: %w", p.id, err)
				}
				p.mu.Lock()
				p.state = stateUp
				p.mu.Unlock()
				c.faults.Conts.Add(1)
				c.logf("SIGCONT %s", p.id)
			}
		}
		c.pushBlocks(true)
		if now.Before(next) {
			continue
		}
		next = now.Add(between())
		if len(deck) == 0 {
			deck, _ = parseFaults(cfg.Faults)
			rng.Shuffle(len(deck), func(i, j int) { deck[i], deck[j] = deck[j], deck[i] })
		}
		act := deck[0]
		deck = deck[1:]
		var up []*proc
		faulty := 0
		for _, p := range c.procs {
			if c.procState(p) == stateUp {
				up = append(up, p)
			} else {
				faulty++
			}
		}
		if (act == actKill || act == actStop) && (faulty >= maxFaulty || len(up) == 0) {
			if !strings.Contains(cfg.Faults, "partition") {
				continue // too many nodes down already; wait for the next turn
			}
			act = actPartition
		}
		switch act {
		case actPartition:
			c.partition(rng)
		case actHeal:
			c.setBlocked(nil)
			c.faults.Heals.Add(1)
			c.logf("heal")
		case actKill:
			p := up[rng.IntN(len(up))]
			p.kill()
			p.mu.Lock()
			p.restartAt = time.Now().Add(time.Second + time.Duration(rng.Int64N(int64(3*time.Second))))
			p.mu.Unlock()
			c.faults.Kills.Add(1)
			c.logf("SIGKILL %s", p.id)
		case actStop:
			p := up[rng.IntN(len(up))]
			if err := p.signal(syscall.SIGSTOP); err != nil {
				return fmt.Errorf("SIGSTOP %s: %w", p.id, err)
			}
			p.mu.Lock()
			p.state = stateStopped
			p.contAt = time.Now().Add(500*time.Millisecond + time.Duration(rng.Int64N(int64(2500*time.Millisecond))))
			p.mu.Unlock()
			c.faults.Stops.Add(1)
			c.logf("SIGSTOP %s", p.id)
		}
	}
	return nil
}

// partition cuts the cluster in one of three shapes: two random halves, one
// node isolated, or a bridge (two halves and one node that sees both).
func (c *controller) partition(rng *rand.Rand) {
	n := len(c.procs)
	perm := rng.Perm(n)
	var a, b []int
	var shape string
	switch rng.IntN(3) {
	case 0:
		shape = "halves"
		a, b = perm[:n/2], perm[n/2:]
	case 1:
		shape = "isolate"
		a, b = perm[:1], perm[1:]
	default:
		shape = "bridge"
		a, b = perm[:n/2], perm[n/2+1:]
		defer func(bridge int) { c.logf("  bridge node %s", c.procs[bridge].id) }(perm[n/2])
	}
	c.setBlocked(func(i, j int) bool {
		return (slices.Contains(a, i) && slices.Contains(b, j)) || (slices.Contains(b, i) && slices.Contains(a, j))
	})
	c.faults.Partitions.Add(1)
	c.logf("partition %s %v | %v", shape, c.ids(a), c.ids(b))
}

func (c *controller) ids(idx []int) []string {
	out := make([]string, len(idx))
	for k, i := range idx {
		out[k] = c.procs[i].id
	}
	slices.Sort(out)
	return out
}

// setBlocked replaces the partition (nil heals) and pushes it to every
// running node.
func (c *controller) setBlocked(cut func(i, j int) bool) {
	for i := range c.blocked {
		for j := range c.blocked[i] {
			c.blocked[i][j] = cut != nil && i != j && cut(i, j)
		}
	}
	for _, p := range c.procs {
		p.mu.Lock()
		p.synced = false
		p.mu.Unlock()
	}
	c.pushBlocks(true)
}

// healAll ends every fault: no partition, every stopped node continued,
// every killed node restarted; then it waits until every node is ready.
func (c *controller) healAll(exe string) error {
	c.setBlocked(nil)
	for _, p := range c.procs {
		switch c.procState(p) {
		case stateStopped:
			if err := p.signal(syscall.SIGCONT); err != nil {
				return fmt.Errorf("SIGCONT %s: %w", p.id, err)
			}
			p.mu.Lock()
			p.state = stateUp
			p.mu.Unlock()
			c.faults.Conts.Add(1)
		case stateDown:
			if err := c.startProc(exe, p); err != nil {
				return err
			}
			c.faults.Restarts.Add(1)
		}
	}
	c.pushBlocks(true)
	for _, p := range c.procs {
		if err := p.waitReady(startTimeout); err != nil {
			return fmt.Errorf("after the heal: %w\n%s", err, p.logTail(3000))
		}
	}
	c.pushBlocks(true)
	c.pushPeers()
	c.logf("healed: every node running, no partition")
	return nil
}
