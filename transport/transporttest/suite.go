// The conformance subtests Run executes, one function each, and their helpers.
package transporttest

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/transport"
)

// open returns a new transport from f that is closed when the test ends.
func open(t *testing.T, f Factory) transport.Transport {
	t.Helper()
	tr := f.New(t)
	require.NotNil(t, tr, "Factory.New returned nil")
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// serving returns a new transport from f serving h.
func serving(t *testing.T, f Factory, h transport.Handler) transport.Transport {
	t.Helper()
	tr := open(t, f)
	require.NoError(t, tr.Serve(h))
	return tr
}

// released returns a channel closed when the test ends, before the
// transports opened so far are closed (cleanups run last-in, first-out).
func released(t *testing.T) <-chan struct{} {
	ch := make(chan struct{})
	t.Cleanup(func() { close(ch) })
	return ch
}

// waitCtx returns a ctx that ends after WaitTimeout or with the test.
func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func echo(_ context.Context, req []byte) ([]byte, error) {
	return append([]byte("re:"), req...), nil
}

type callResult struct {
	reply []byte
	err   error
}

// goCall runs one Call in a new goroutine.
func goCall(ctx context.Context, tr transport.Transport, addr string, req []byte) <-chan callResult {
	ch := make(chan callResult, 1)
	go func() {
		reply, err := tr.Call(ctx, addr, req)
		ch <- callResult{reply, err}
	}()
	return ch
}

// recv waits up to WaitTimeout for a value on ch.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(WaitTimeout)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		require.FailNowf(t, "timed out", "waiting %v for %s", WaitTimeout, what)
		panic("unreachable")
	}
}

func testRoundTrip(t *testing.T, f Factory) {
	a, b := open(t, f), serving(t, f, echo)
	reply, err := a.Call(waitCtx(t), b.Addr(), []byte("hello"))
	require.NoError(t, err)
	require.Equal(t, "re:hello", string(reply))
}

func testEmptyPayloads(t *testing.T, f Factory) {
	a := open(t, f)
	b := serving(t, f, func(_ context.Context, req []byte) ([]byte, error) {
		if len(req) != 0 {
			return nil, fmt.Errorf("want an empty request, got %d bytes", len(req))
		}
		return nil, nil
	})
	for _, req := range [][]byte{nil, {}} {
		reply, err := a.Call(waitCtx(t), b.Addr(), req)
		require.NoError(t, err)
		require.Empty(t, reply)
	}
}

func testCallSelf(t *testing.T, f Factory) {
	a := serving(t, f, echo)
	reply, err := a.Call(waitCtx(t), a.Addr(), []byte("me"))
	require.NoError(t, err)
	require.Equal(t, "re:me", string(reply))
}

// testBuffersNotShared checks that the caller may reuse req and reply while
// the handler keeps its request and reply slices.
func testBuffersNotShared(t *testing.T, f Factory) {
	kept := make(chan []byte, 1)
	out := []byte("reply")
	a := open(t, f)
	b := serving(t, f, func(_ context.Context, req []byte) ([]byte, error) {
		kept <- req
		return out, nil
	})
	req := []byte("request")
	reply, err := a.Call(waitCtx(t), b.Addr(), req)
	require.NoError(t, err)
	require.Equal(t, "reply", string(reply))
	req[0], reply[0] = 'X', 'Y'
	require.Equal(t, "request", string(recv(t, kept, "the handler's request")), "the handler's request shares the caller's buffer")
	require.Equal(t, "reply", string(out), "the caller's reply shares the handler's buffer")
}

// testConcurrentCalls makes 64 calls from 8 goroutines. Every handler waits
// until all 64 requests have arrived, so they are all in flight at once, and
// payload sizes vary so frames of different lengths interleave.
func testConcurrentCalls(t *testing.T, f Factory) {
	const goroutines, perGoroutine = 8, 8
	const total = goroutines * perGoroutine
	var (
		mu      sync.Mutex
		arrived int
		all     = make(chan struct{})
	)
	a := open(t, f)
	b := serving(t, f, func(ctx context.Context, req []byte) ([]byte, error) {
		mu.Lock()
		if arrived++; arrived == total {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-ctx.Done():
			return nil, fmt.Errorf("not all %d calls were in flight at once: %w", total, ctx.Err())
		}
		return append([]byte("re:"), req...), nil
	})
	maxSize := min(f.MaxFrameSize()-3, 8192)
	payload := func(i int) []byte {
		size := 8 + (i*997)%(maxSize-8)
		p := bytes.Repeat([]byte{byte(i)}, size)
		copy(p, fmt.Sprintf("call%04d", i))
		return p
	}
	ctx := waitCtx(t)
	errs := make(chan error, total)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			var calls []<-chan callResult
			for c := range perGoroutine {
				calls = append(calls, goCall(ctx, a, b.Addr(), payload(g*perGoroutine+c)))
			}
			for c, ch := range calls {
				r := <-ch
				want := append([]byte("re:"), payload(g*perGoroutine+c)...)
				switch {
				case r.err != nil:
					errs <- fmt.Errorf("call %d: %w", g*perGoroutine+c, r.err)
				case !bytes.Equal(r.reply, want):
					errs <- fmt.Errorf("call %d: got a reply of %d bytes starting %q, want %d bytes starting %q",
						g*perGoroutine+c, len(r.reply), r.reply[:min(len(r.reply), 11)], len(want), want[:11])
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func testRemoteError(t *testing.T, f Factory) {
	a := open(t, f)
	b := serving(t, f, func(context.Context, []byte) ([]byte, error) {
		return []byte("ignored"), fmt.Errorf("boom %d", 7)
	})
	reply, err := a.Call(waitCtx(t), b.Addr(), []byte("x"))
	require.Nil(t, reply)
	require.ErrorIs(t, err, transport.ErrRemote)
	var re *transport.RemoteError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "boom 7", re.Msg)
	require.Equal(t, b.Addr(), re.Addr)
}

func testFrameLimitRequest(t *testing.T, f Factory) {
	limit := f.MaxFrameSize()
	var mu sync.Mutex
	var calls int
	a := open(t, f)
	b := serving(t, f, func(_ context.Context, req []byte) ([]byte, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		return []byte(strconv.Itoa(len(req))), nil
	})
	reply, err := a.Call(waitCtx(t), b.Addr(), make([]byte, limit))
	require.NoError(t, err, "a request of exactly MaxFrameSize (%d) must pass", limit)
	require.Equal(t, strconv.Itoa(limit), string(reply))

	_, err = a.Call(waitCtx(t), b.Addr(), make([]byte, limit+1))
	require.ErrorIs(t, err, transport.ErrFrameTooLarge)
	mu.Lock()
	require.Equal(t, 1, calls, "an oversized request reached the handler")
	mu.Unlock()

	reply, err = a.Call(waitCtx(t), b.Addr(), []byte("abc"))
	require.NoError(t, err, "the transport must stay usable after rejecting a frame")
	require.Equal(t, "3", string(reply))
}

func testFrameLimitReply(t *testing.T, f Factory) {
	limit := f.MaxFrameSize()
	a := open(t, f)
	b := serving(t, f, func(_ context.Context, req []byte) ([]byte, error) {
		n, err := strconv.Atoi(string(req))
		if err != nil {
			return nil, err
		}
		return bytes.Repeat([]byte("x"), n), nil
	})
	call := func(n int) ([]byte, error) { return a.Call(waitCtx(t), b.Addr(), []byte(strconv.Itoa(n))) }

	reply, err := call(limit)
	require.NoError(t, err, "a reply of exactly MaxFrameSize (%d) must pass", limit)
	require.Len(t, reply, limit)

	_, err = call(limit + 1)
	require.ErrorIs(t, err, transport.ErrFrameTooLarge)

	reply, err = call(3)
	require.NoError(t, err, "the transport must stay usable after rejecting a reply")
	require.Equal(t, "xxx", string(reply))
}

func testPeerRestart(t *testing.T, f Factory) {
	a, b := open(t, f), serving(t, f, echo)
	addr := b.Addr()
	_, err := a.Call(waitCtx(t), addr, []byte("before"))
	require.NoError(t, err)

	require.NoError(t, b.Close())
	for i := range 3 {
		_, err := a.Call(waitCtx(t), addr, []byte("down"))
		require.ErrorIs(t, err, transport.ErrUnreachable, "call %d while the peer is down", i)
	}

	b2 := f.Reopen(t, addr)
	require.NotNil(t, b2, "Factory.Reopen returned nil")
	t.Cleanup(func() { _ = b2.Close() })
	require.Equal(t, addr, b2.Addr())
	require.NoError(t, b2.Serve(func(_ context.Context, req []byte) ([]byte, error) {
		return append([]byte("again:"), req...), nil
	}))
	// A connection broken by the restart may fail a call or two before the
	// caller notices; it must recover by itself, without being recreated.
	const attempts = 5
	for i := 1; ; i++ {
		reply, err := a.Call(waitCtx(t), addr, []byte("after"))
		if err == nil {
			require.Equal(t, "again:after", string(reply))
			break
		}
		require.ErrorIs(t, err, transport.ErrUnreachable)
		require.Less(t, i, attempts, "still failing after %d calls to the restarted peer: %v", attempts, err)
	}
}

func testPeerCloseFailsCallsInFlight(t *testing.T, f Factory) {
	started, ended := make(chan struct{}, 1), make(chan error, 1)
	a := open(t, f)
	b := serving(t, f, func(ctx context.Context, _ []byte) ([]byte, error) {
		started <- struct{}{}
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, ctx.Err()
	})
	call := goCall(waitCtx(t), a, b.Addr(), []byte("x"))
	recv(t, started, "the handler to start")
	require.NoError(t, b.Close())
	require.Error(t, recv(t, ended, "the handler's ctx to end when its transport closes"))
	r := recv(t, call, "the call to return after the peer closed")
	require.ErrorIs(t, r.err, transport.ErrUnreachable)
}

func testDeadlineHonoured(t *testing.T, f Factory) {
	type seen struct {
		hadDeadline bool
		err         error
	}
	ended := make(chan seen, 1)
	a := open(t, f)
	b := serving(t, f, func(ctx context.Context, req []byte) ([]byte, error) {
		if string(req) == "warm up" {
			return nil, nil
		}
		_, ok := ctx.Deadline()
		<-ctx.Done()
		ended <- seen{ok, ctx.Err()}
		return nil, ctx.Err()
	})
	// Connect first, every connection of a pool of up to 8, so that
	// dialling (a TLS handshake on a loaded machine may take 100ms) does not
	// use up the deadline before the request goes.
	var err error
	for range 8 {
		_, err = a.Call(waitCtx(t), b.Addr(), []byte("warm up"))
		require.NoError(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = a.Call(ctx, b.Addr(), []byte("x"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), WaitTimeout)
	s := recv(t, ended, "the handler's ctx to end at the caller's deadline")
	require.True(t, s.hadDeadline, "the caller's deadline must reach the handler's ctx")
	require.ErrorIs(t, s.err, context.DeadlineExceeded)
}

func testCancelHonoured(t *testing.T, f Factory) {
	started, release := make(chan struct{}, 1), released(t)
	a := open(t, f)
	b := serving(t, f, func(ctx context.Context, _ []byte) ([]byte, error) {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	call := goCall(ctx, a, b.Addr(), []byte("x"))
	recv(t, started, "the handler to start")
	cancel()
	r := recv(t, call, "the call to return after its ctx was cancelled")
	require.ErrorIs(t, r.err, context.Canceled)
}

func testCloseUnblocksCalls(t *testing.T, f Factory) {
	started, release := make(chan struct{}, 1), released(t)
	a := open(t, f)
	b := serving(t, f, func(ctx context.Context, _ []byte) ([]byte, error) {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	})
	call := goCall(context.Background(), a, b.Addr(), []byte("x"))
	recv(t, started, "the handler to start")
	require.NoError(t, a.Close())
	r := recv(t, call, "the call to return after its transport closed")
	require.ErrorIs(t, r.err, transport.ErrClosed)
}

func testUnreachable(t *testing.T, f Factory) {
	a, gone := open(t, f), open(t, f)
	addr := gone.Addr()
	require.NoError(t, gone.Close())
	_, err := a.Call(waitCtx(t), addr, []byte("anyone?"))
	require.ErrorIs(t, err, transport.ErrUnreachable)
	require.NotErrorIs(t, err, context.DeadlineExceeded, "a refused call must fail at once")
}

func testNotServing(t *testing.T, f Factory) {
	a, b := open(t, f), open(t, f)
	_, err := a.Call(waitCtx(t), b.Addr(), []byte("x"))
	require.ErrorIs(t, err, transport.ErrUnreachable, "a call to a transport that does not serve yet")
	require.NoError(t, b.Serve(echo))
	reply, err := a.Call(waitCtx(t), b.Addr(), []byte("x"))
	require.NoError(t, err)
	require.Equal(t, "re:x", string(reply))
}

func testAfterClose(t *testing.T, f Factory) {
	a, b := open(t, f), serving(t, f, echo)
	require.NoError(t, a.Close())
	_, err := a.Call(waitCtx(t), b.Addr(), []byte("x"))
	require.ErrorIs(t, err, transport.ErrClosed)
	require.ErrorIs(t, a.Serve(echo), transport.ErrClosed)
}

func testCloseIdempotent(t *testing.T, f Factory) {
	a := serving(t, f, echo)
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for range cap(errs) {
		wg.Go(func() { errs <- a.Close() })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, a.Close())
}

func testServeTwice(t *testing.T, f Factory) {
	a := serving(t, f, echo)
	require.Error(t, a.Serve(echo))
	b := open(t, f)
	reply, err := b.Call(waitCtx(t), a.Addr(), []byte("x"))
	require.NoError(t, err, "the first handler must keep serving")
	require.Equal(t, "re:x", string(reply))
}
