// Package workers runs short tasks on goroutines that stay for the next
// task. A request's goroutine that writes to a TLS connection grows its
// stack several times; a fresh goroutine per request paid that copying on
// every request (11% of a get's CPU in the peer benchmark), a kept one pays
// it once.
package workers

import (
	"sync"
	"time"
)

// DefaultIdle is how long a worker waits for a task before it exits, when
// New is given no idle time.
const DefaultIdle = 10 * time.Second

// Pool hands each task to an idle worker, or starts a worker for it. It
// bounds nothing: the callers bound how many tasks run at once, and the
// workers alive never outnumber the most tasks that ran at once, counting
// a task until its worker is back waiting for the next. (Under load a
// worker whose task has ended may not be waiting yet when the caller,
// whose bound the task freed, hands over the next one, which then starts a
// worker of its own.)
type Pool struct {
	tasks chan func()
	done  <-chan struct{}
	wg    *sync.WaitGroup
	idle  time.Duration
}

// New returns a Pool whose workers exit once done closes, or after idle
// (DefaultIdle if zero) to idle×2 without a task. Each worker is counted in
// wg while it lives, so a Wait on wg after done closes returns once the
// workers have gone.
func New(done <-chan struct{}, wg *sync.WaitGroup, idle time.Duration) *Pool {
	if idle <= 0 {
		idle = DefaultIdle
	}
	return &Pool{tasks: make(chan func()), done: done, wg: wg, idle: idle}
}

// Go runs fn on a worker: one waiting for a task if there is one, else a
// new one. A caller that must wait for fn counts it itself; Go may be
// called after done closed, and fn still runs.
func (p *Pool) Go(fn func()) {
	select {
	case p.tasks <- fn:
	default:
		p.wg.Add(1)
		go p.work(fn)
	}
}

func (p *Pool) work(fn func()) {
	defer p.wg.Done()
	fn()
	t := time.NewTimer(p.idle)
	defer t.Stop()
	ran := false
	for {
		select {
		case fn = <-p.tasks:
			fn()
			ran = true
		case <-t.C:
			if !ran {
				return
			}
			ran = false
			t.Reset(p.idle)
		case <-p.done:
			return
		}
	}
}
