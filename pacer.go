// pacer.go: the rate limit that keeps background work (hinted handoff §4.6,
// anti-entropy §4.7) from starving foreground traffic.
package dynamo

import (
	"context"
	"sync"
	"time"
)

// pacer spaces out units of background work to at most rate per second. The
// zero value is ready; it is safe for concurrent use.
type pacer struct {
	mu   sync.Mutex
	next time.Time
}

// wait blocks until n more units fit under rate per second, or ctx ends.
func (p *pacer) wait(ctx context.Context, n, rate int) error {
	if n <= 0 || rate <= 0 {
		return ctx.Err()
	}
	p.mu.Lock()
	now := time.Now()
	at := p.next
	if at.Before(now) {
		at = now
	}
	p.next = at.Add(time.Duration(n) * time.Second / time.Duration(rate))
	p.mu.Unlock()
	wait := at.Sub(now)
	if wait <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
