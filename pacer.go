// pacer.go: the rate limits that keep background work (hinted handoff §4.6,
// anti-entropy and folding §4.7) from starving foreground traffic.
package dynamo

import (
	"context"

	"golang.org/x/time/rate"
)

// pacer spaces out units of background work (keys, hints) to at most a
// rate per second. A batch takes at least a tenth of a second's worth, so
// the throttle shapes the traffic rather than letting a burst through: the
// bucket holds one batch.
type pacer struct{ lim *rate.Limiter }

// newPacer returns a pacer of perSecond units a second, in batches of at
// most batchFor(perSecond, maxBatch).
func newPacer(perSecond, maxBatch int) *pacer {
	return &pacer{lim: rate.NewLimiter(rate.Limit(perSecond), batchFor(perSecond, maxBatch))}
}

// batchFor is the most units one batch takes at perSecond: a tenth of a
// second's worth, at least one, at most limit.
func batchFor(perSecond, limit int) int { return min(limit, max(1, perSecond/10)) }

// wait blocks until n more units fit, or ctx ends. n beyond a batch counts
// as one batch.
func (p *pacer) wait(ctx context.Context, n int) error {
	if n <= 0 {
		return ctx.Err()
	}
	return p.lim.WaitN(ctx, min(n, p.lim.Burst()))
}
