// faultnet.go: per-link latency, drops, lost replies, duplicates and jitter, decided by hashing fake time, not by call order (§4.6 failures).
package dynamotest

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/dynamo-kv/dynamo/transport"
	"github.com/dynamo-kv/dynamo/transport/memnet"
)

// slot is the granularity of fault decisions: every message on one link in one
// slot of fake time meets the same fate.
const slot = time.Millisecond

// Every request's one-way latency, fixed per link, and the most a link
// brings a call's deadline forward.
const (
	minLatency    = 500 * time.Microsecond
	latencySpread = time.Millisecond
	maxEarly      = time.Millisecond
	dupLag        = 100 * time.Microsecond // a duplicate arrives at least this much after the original
)

// chaos is the nemesis's current setting for random message faults.
type chaos struct {
	drop      float64       // request lost before delivery
	dropReply float64       // reply lost after the handler ran
	dup       float64       // request delivered twice
	jitter    time.Duration // extra delay, uniform in [0, jitter]
}

func (c chaos) String() string {
	return fmt.Sprintf("drop=%.2f drop_reply=%.2f dup=%.2f jitter=%v", c.drop, c.dropReply, c.dup, c.jitter)
}

// faults holds the chaos setting shared by every node's transport.
type faults struct {
	seed uint64
	mu   sync.RWMutex
	c    chaos
}

func (f *faults) set(c chaos) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.c = c
}

// fate is what happens to one call.
type fate struct {
	drop, dropReply, dup bool
	delay                time.Duration // before the request is sent
	early                time.Duration // the call's deadline is brought forward by this
}

// fate decides a call from → to made now. It depends only on the seed, the
// link and the slot of fake time, never on the order of concurrent calls.
// Every link has its own fixed latency, between minLatency and
// minLatency+latencySpread, so the replies of a fan-out arrive at distinct
// instants and "the first R replies" does not depend on goroutine order.
func (f *faults) fate(from, to string, now time.Time) fate {
	link := mix64(f.seed ^ hashString(from) ^ mix64(hashString(to)+1))
	ft := fate{
		delay: minLatency + time.Duration(link%uint64(latencySpread)),
		early: time.Duration(mix64(link) % uint64(maxEarly)),
	}
	f.mu.RLock()
	c := f.c
	f.mu.RUnlock()
	if c == (chaos{}) {
		return ft
	}
	h := mix64(link ^ mix64(uint64(now.UnixNano()/int64(slot))+2))
	u := func(i uint64) float64 { return float64(mix64(h+i)>>11) / (1 << 53) }
	ft.drop = u(1) < c.drop
	ft.dropReply = u(2) < c.dropReply
	ft.dup = u(3) < c.dup
	ft.delay += time.Duration(u(4) * float64(c.jitter))
	return ft
}

// faultTransport wraps a node's memnet.Transport with the latency and faults
// of a fate. memnet supplies partitions, isolation and one-way blocks.
type faultTransport struct {
	inner *memnet.Transport
	f     *faults
	done  chan struct{}

	mu     sync.Mutex
	closed bool
	bg     sync.WaitGroup // inner calls in flight in the background
	once   sync.Once
}

var _ transport.Transport = (*faultTransport)(nil)

func newFaultTransport(inner *memnet.Transport, f *faults) *faultTransport {
	return &faultTransport{inner: inner, f: f, done: make(chan struct{})}
}

// Addr returns the inner transport's address.
func (t *faultTransport) Addr() string { return t.inner.Addr() }

// Serve serves inbound requests on the inner transport.
func (t *faultTransport) Serve(h transport.Handler) error { return t.inner.Serve(h) }

// Call sends req to addr through the inner transport, after applying this
// slot's fate: a lost request or reply blocks until ctx ends, like a lost
// packet; a duplicate is delivered once more in the background.
//
// Calls of one fan-out share a deadline, and with it the instant at which
// they fail when their replies are lost. So that they fail in an order that
// does not depend on goroutine scheduling, each link ends its calls a little
// early, by its own amount. The inner call keeps the caller's own deadline,
// which reaches the handler: a handler that gives up at that deadline then
// replies after the caller stopped waiting, never at the same instant.
func (t *faultTransport) Call(ctx context.Context, addr string, req []byte) ([]byte, error) {
	ft := t.f.fate(t.inner.Addr(), addr, time.Now())
	if ft.dup {
		t.duplicate(ctx, addr, req, ft.delay+ft.early/2+dupLag)
	}
	dl, hasDeadline := ctx.Deadline()
	if hasDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-ft.early))
		defer cancel()
	}
	if ft.drop {
		return nil, t.lost(ctx, addr)
	}
	if ft.delay > 0 {
		timer := time.NewTimer(ft.delay)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("dynamotest: call %s: %w", addr, ctx.Err())
		case <-t.done:
			timer.Stop()
			return nil, transport.ErrClosed
		}
	}
	var resp []byte
	var err error
	if hasDeadline {
		resp, err = t.callUntil(ctx, dl, addr, req)
	} else {
		resp, err = t.inner.Call(ctx, addr, req)
	}
	if err == nil && ft.dropReply {
		return nil, t.lost(ctx, addr)
	}
	return resp, err
}

// callUntil makes the inner call with deadline dl in the background and
// waits for its reply until ctx, which ends a little before dl, ends.
func (t *faultTransport) callUntil(ctx context.Context, dl time.Time, addr string, req []byte) ([]byte, error) {
	type result struct {
		resp []byte
		err  error
	}
	ch := make(chan result, 1)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, transport.ErrClosed
	}
	t.bg.Add(1)
	t.mu.Unlock()
	inner, cancel := context.WithDeadline(context.WithoutCancel(ctx), dl)
	req = bytes.Clone(req) // the call may outlive this one
	go func() {
		defer t.bg.Done()
		defer cancel()
		resp, err := t.inner.Call(inner, addr, req)
		ch <- result{resp, err}
	}()
	select {
	case r := <-ch:
		return r.resp, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("dynamotest: call %s: %w", addr, ctx.Err())
	case <-t.done:
		return nil, transport.ErrClosed
	}
}

// duplicate delivers a copy of req once more, after delay (a little more
// than the original's, so the two never race at one instant); its reply is
// discarded. The copy ignores the caller's cancellation, as a packet already
// on the wire would, but not its deadline.
func (t *faultTransport) duplicate(ctx context.Context, addr string, req []byte, delay time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(time.Second)
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), dl)
	req = bytes.Clone(req)
	t.bg.Add(1)
	go func() {
		defer t.bg.Done()
		defer cancel()
		timer := time.NewTimer(delay)
		defer timer.Stop()
		select {
		case <-timer.C:
			_, _ = t.inner.Call(ctx, addr, req)
		case <-ctx.Done():
		case <-t.done:
		}
	}()
}

// lost blocks like a call whose packet vanished: until ctx ends or the
// transport closes.
func (t *faultTransport) lost(ctx context.Context, addr string) error {
	select {
	case <-ctx.Done():
		return fmt.Errorf("dynamotest: call %s: message lost: %w: %w", addr, transport.ErrUnreachable, ctx.Err())
	case <-t.done:
		return transport.ErrClosed
	}
}

// Close closes the inner transport and waits for the calls it made in the
// background.
func (t *faultTransport) Close() error {
	t.once.Do(func() {
		t.mu.Lock()
		t.closed = true
		close(t.done)
		t.mu.Unlock()
		_ = t.inner.Close()
		t.bg.Wait()
	})
	return nil
}

// mix64 is the splitmix64 finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}
