// clients.go: the clients that add unique elements to sets and delete
// them through the nodes' HTTP API, and the convergence wait at the end.

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// converge reads every key from every node at R=3 (which also repairs) and
// every node's local replica, until the reads agree and every primary's
// replica holds what they return, or Converge passes. It returns the agreed
// state, or when it gave up, the union of what the reads returned.
func (c *controller) converge(ctx context.Context) (final map[string][]siblingView, ms int64, ok bool, why string) {
	start := time.Now()
	deadline := start.Add(c.cfg.Converge)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	seen := map[string]map[int64]siblingView{} // union of every read, for a run that never converges
	for round := 0; round < 100000; round++ {
		final, why = map[string][]siblingView{}, ""
		for k := range c.cfg.Keys {
			key := keyName(k)
			var want string
			for _, p := range c.procs {
				ctl, _, _ := p.addrs()
				var rr readReply
				if err := c.getJSON(ctl, "/read?r=3&key="+url.QueryEscape(key), &rr, c.cfg.OpTimeout+time.Second); err != nil {
					why = fmt.Sprintf("read %s on %s: %v", key, p.id, err)
					continue
				}
				c.rec.sawRead(rr)
				if seen[key] == nil {
					seen[key] = map[int64]siblingView{}
				}
				for _, sb := range rr.Siblings {
					seen[key][sb.Writer] = sb
				}
				got := canonical(rr.Siblings)
				if want == "" {
					want, final[key] = got, rr.Siblings
				} else if got != want && why == "" {
					why = fmt.Sprintf("%s: %s reads %s, %s read %s", key, p.id, short(got), c.procs[0].id, short(want))
				}
			}
			// Every primary holds the same siblings, and they resolve (in
			// lww mode: dynamo.Latest) to what the reads return.
			var replica, replicaOf string
			for _, p := range c.procs {
				ctl, _, _ := p.addrs()
				var lr readReply
				if err := c.getJSON(ctl, "/local?key="+url.QueryEscape(key), &lr, time.Second); err != nil {
					if why == "" {
						why = fmt.Sprintf("local %s on %s: %v", key, p.id, err)
					}
					continue
				}
				if !lr.Primary || why != "" {
					continue
				}
				got, resolved := canonical(lr.Siblings), canonical(lr.Siblings)
				if c.cfg.Mode == "lww" {
					resolved = canonical(lr.Resolved)
				}
				switch {
				case replica != "" && got != replica:
					why = fmt.Sprintf("%s: primary %s holds %s, primary %s holds %s", key, p.id, short(got), replicaOf, short(replica))
				case resolved != want:
					why = fmt.Sprintf("%s: primary %s holds %s, reads return %s", key, p.id, short(resolved), short(want))
				}
				replica, replicaOf = got, p.id
			}
		}
		if why == "" {
			return final, time.Since(start).Milliseconds(), true, ""
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		<-tick.C
	}
	final = map[string][]siblingView{}
	for key, m := range seen {
		for _, sb := range m {
			final[key] = append(final[key], sb)
		}
	}
	return final, -1, false, why
}

// canonical is a sibling list's comparable form.
func canonical(sibs []siblingView) string {
	var b strings.Builder
	for _, sb := range sibs {
		fmt.Fprintf(&b, "%d:%v;", sb.Writer, sb.Elems)
	}
	if b.Len() == 0 {
		return "(none)"
	}
	return b.String()
}

func short(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

func keyName(k int) string { return "set-" + strconv.Itoa(k) }

// keyGate keeps adds and deletes of one key apart in real time: a delete
// waits for the adds in flight on its key to finish, and no add to the key
// starts meanwhile. Without it nearly every element a delete covers comes
// back at once in a concurrent add's sibling (each add rewrites the whole
// set it read), and the delete tests little.
type keyGate struct {
	mu       sync.Mutex
	cond     *sync.Cond
	inflight map[string]int
	deleting map[string]bool
}

func newKeyGate() *keyGate {
	g := &keyGate{inflight: map[string]int{}, deleting: map[string]bool{}}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// enterAdd registers an add of key, unless key is being deleted.
func (g *keyGate) enterAdd(key string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.deleting[key] {
		return false
	}
	g.inflight[key]++
	return true
}

func (g *keyGate) exitAdd(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inflight[key]--
	g.cond.Broadcast()
}

// beginDelete blocks new adds of key and waits for those in flight, which
// end within the client's timeout.
func (g *keyGate) beginDelete(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.deleting[key] = true
	for g.inflight[key] > 0 {
		g.cond.Wait()
	}
}

func (g *keyGate) endDelete(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.deleting, key)
}

// clientLoop adds unique elements to random keys through random nodes
// until ctx ends, with an occasional read (R=2) and, when a delete is due,
// a delete of a whole key.
func (c *controller) clientLoop(ctx context.Context, id int, nextDelete *atomic.Int64) {
	rng := rand.New(rand.NewPCG(c.cfg.Seed, uint64(id)+1))
	pause := time.NewTimer(0)
	defer pause.Stop()
	<-pause.C
	const maxOps = 1 << 20
	for op := 0; op < maxOps && ctx.Err() == nil; op++ {
		key := keyName(rng.IntN(c.cfg.Keys))
		p := c.procs[rng.IntN(len(c.procs))]
		ctl, _, _ := p.addrs()
		due := nextDelete.Load()
		ok := true
		switch {
		case c.cfg.DeleteEvery > 0 && time.Now().UnixNano() >= due &&
			nextDelete.CompareAndSwap(due, time.Now().Add(c.cfg.DeleteEvery).UnixNano()):
			c.gate.beginDelete(key)
			ok = c.doDelete(ctl, p.id, key)
			c.gate.endDelete(key)
		case rng.IntN(20) == 0:
			var rr readReply
			err := c.getJSON(ctl, "/read?r=2&key="+url.QueryEscape(key), &rr, c.cfg.OpTimeout+time.Second)
			if ok = err == nil; ok {
				c.rec.sawRead(rr)
			}
		case c.gate.enterAdd(key):
			ok = c.doAdd(ctl, key)
			c.gate.exitAdd(key)
		}
		if !ok {
			// Back off a little after a failure, so a dead node is not
			// hammered in a tight loop.
			pause.Reset(20 * time.Millisecond)
			select {
			case <-ctx.Done():
			case <-pause.C:
			}
		}
	}
}

// doAdd adds a fresh element to key through the node at ctl and records the
// outcome. The request is not tied to the run's ctx: once sent, it runs to
// its answer or its timeout, so every outcome is known or "unknown".
func (c *controller) doAdd(ctl, key string) bool {
	elem := c.rec.nextElem.Add(1)
	a := addRec{Key: key, Elem: elem, Start: time.Now()}
	rctx, cancel := context.WithTimeout(context.Background(), c.cfg.OpTimeout+2*time.Second)
	defer cancel()
	u := fmt.Sprintf("http://%s/add?key=%s&elem=%d", ctl, url.QueryEscape(key), elem)
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, u, nil)
	if err != nil {
		a.Err = err.Error()
	} else if resp, err := c.client.Do(req); err != nil {
		a.Err = classifyNetErr(err)
	} else {
		var rep addReply
		body, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		switch {
		case rerr != nil:
			a.Err = classifyNetErr(rerr)
		case resp.StatusCode == http.StatusOK && json.Unmarshal(body, &rep) == nil:
			a.Acked, a.Writer, a.Superseded = true, rep.Writer, rep.Superseded
			c.rec.sawSiblings(rep.Siblings)
		default:
			var er errorReply
			_ = json.Unmarshal(body, &er)
			a.Err = strconv.Itoa(resp.StatusCode) + " " + errorKind(er.Error)
		}
	}
	a.End = time.Now()
	c.rec.add(a)
	return a.Acked
}

// classifyNetErr names a client-side failure: no answer from the node.
func classifyNetErr(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "Client.Timeout") || strings.Contains(msg, "timeout"):
		return "no answer in time"
	case strings.Contains(msg, "connection refused"):
		return "connection refused"
	case strings.Contains(msg, "EOF") || strings.Contains(msg, "reset by peer") || strings.Contains(msg, "broken pipe"):
		return "connection broken"
	}
	return msg
}

// errorKind shortens a node's error text to its kind: the text before the
// second colon ("dynamo: write quorum not met").
func errorKind(msg string) string {
	parts := strings.SplitN(msg, ": ", 3)
	if len(parts) > 2 {
		parts = parts[:2]
	}
	return strings.Join(parts, ": ")
}

// doDelete deletes key through the node at ctl and records what the delete
// covered and whether it was acknowledged.
func (c *controller) doDelete(ctl, id, key string) bool {
	d := delRec{Key: key, Start: time.Now(), Outcome: delUnknown}
	rctx, cancel := context.WithTimeout(context.Background(), c.cfg.OpTimeout+2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, "http://"+ctl+"/delete?key="+url.QueryEscape(key), nil)
	if err == nil {
		var resp *http.Response
		if resp, err = c.client.Do(req); err == nil {
			var rep deleteReply
			body, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
			resp.Body.Close()
			if rerr == nil && json.Unmarshal(body, &rep) == nil {
				switch {
				case resp.StatusCode == http.StatusOK:
					d.Outcome = delAcked
				case rep.Stage == "get":
					d.Outcome = delNotWritten
				case rep.Stage == "delete":
					d.Outcome = delFailed
				}
				d.Elems, d.Writers = rep.Elems, rep.Writers
				c.rec.sawSiblings(rep.Siblings)
			}
		}
	}
	d.End = time.Now()
	c.rec.del(d)
	c.logf("delete %s via %s: %s, covering %d elements of %d versions", key, id, d.Outcome, len(d.Elems), len(d.Writers))
	return d.Outcome == delAcked
}
