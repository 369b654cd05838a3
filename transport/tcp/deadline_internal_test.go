// Tests of the handler's deadline context, in fake time: it behaves as context.WithDeadline would, and starts no timer until Done is asked.
package tcp

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/transport"
)

func TestDeadlineCtx_UnarmedAnswersFromTheClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		parent := transport.WithPeer(context.Background(), transport.Peer{Addr: "a", NodeID: "n1"})
		deadline := time.Now().Add(time.Second)
		c := newDeadlineCtx(parent, deadline)
		d, ok := c.Deadline()
		require.True(t, ok)
		require.Equal(t, deadline, d)
		require.NoError(t, c.Err())
		p, ok := transport.PeerFromContext(c)
		require.True(t, ok, "values pass through")
		require.Equal(t, "n1", p.NodeID)

		time.Sleep(time.Second)
		require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
		require.False(t, armed(c), "nothing asked for Done: no timer")
		select {
		case <-c.Done():
		default:
			t.Fatal("Done asked after the deadline is not closed")
		}
		require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
		c.release()
	})
}

func TestDeadlineCtx_DoneClosesAtTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		c := newDeadlineCtx(context.Background(), start.Add(time.Second))
		done := c.Done()
		time.Sleep(999 * time.Millisecond)
		select {
		case <-done:
			t.Fatal("closed before the deadline")
		default:
		}
		<-done
		require.Equal(t, time.Second, time.Since(start))
		require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
		c.release()
	})
}

func TestDeadlineCtx_ParentCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		c := newDeadlineCtx(parent, time.Now().Add(time.Hour))
		cancel()
		require.ErrorIs(t, c.Err(), context.Canceled, "unarmed")

		parent, cancel = context.WithCancel(context.Background())
		c = newDeadlineCtx(parent, time.Now().Add(time.Hour))
		done := c.Done()
		// A context derived from c is cancelled with it.
		child, stop := context.WithCancel(c)
		defer stop()
		cancel()
		<-done
		<-child.Done()
		require.ErrorIs(t, c.Err(), context.Canceled)
		require.ErrorIs(t, child.Err(), context.Canceled)
		c.release()
	})
}

func TestDeadlineCtx_EarlierParentDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		parent, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c := newDeadlineCtx(parent, time.Now().Add(time.Hour))
		d, _ := c.Deadline()
		require.Equal(t, time.Now().Add(time.Second), d)
	})
}

func TestDeadlineCtx_ReleaseCancels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newDeadlineCtx(context.Background(), time.Now().Add(time.Hour))
		done := c.Done()
		c.release()
		<-done // release cancels, as WithDeadline's cancel does
		require.ErrorIs(t, c.Err(), context.Canceled)
	})
}

func armed(c *deadlineCtx) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.armed != nil
}

// spinUntilErr waits, on the clock, until c.Err is not nil: a short
// deadline on real time, since a goroutine that never blocks would keep a
// synctest bubble's clock still.
func spinUntilErr(t *testing.T, c *deadlineCtx) error {
	limit := time.Now().Add(10 * time.Second)
	for {
		if err := c.Err(); err != nil {
			return err
		}
		if time.Now().After(limit) {
			t.Fatal("Err still nil 10 s after a 200 µs deadline")
		}
	}
}

// Once Done has been asked, Err is nil for as long as the channel is open,
// and keeps its first value after the handler returns.
func TestDeadlineCtx_ArmedErrFollowsDone(t *testing.T) {
	for range 50 {
		c := newDeadlineCtx(context.Background(), time.Now().Add(200*time.Microsecond))
		done := c.Done()
		first := spinUntilErr(t, c)
		select {
		case <-done:
		default:
			t.Fatal("Err is not nil while Done is open")
		}
		require.ErrorIs(t, first, context.DeadlineExceeded)
		c.release()
		require.Equal(t, first, c.Err(), "Err changed after the handler returned")
	}
}

func TestDeadlineCtx_UnarmedErrNeverChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		c := newDeadlineCtx(parent, time.Now().Add(time.Second))
		time.Sleep(time.Second)
		require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
		cancel()
		require.ErrorIs(t, c.Err(), context.DeadlineExceeded, "the parent's cancellation came second")
		<-c.Done() // asked now: closed at once
		c.release()
		require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
	})
}

// A handler that returned without asking for Done leaves a context that is
// over, as WithTimeout's cancel left it: a goroutine it started finds Err
// set, Done closed, and a context derived from it cancelled, with no timer
// left running until the caller's deadline.
func TestDeadlineCtx_ReleaseEndsUnarmed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newDeadlineCtx(context.Background(), time.Now().Add(time.Hour))
		c.release()
		require.ErrorIs(t, c.Err(), context.Canceled)
		child, stop := context.WithCancel(c)
		defer stop()
		select {
		case <-child.Done():
		default:
			t.Fatal("a context derived after the handler returned is live")
		}
		select {
		case <-c.Done():
		default:
			t.Fatal("Done asked after the handler returned is open")
		}
		require.ErrorIs(t, c.Err(), context.Canceled)

		// Past its deadline when the handler returns, it says so.
		c = newDeadlineCtx(context.Background(), time.Now().Add(time.Second))
		time.Sleep(time.Second)
		c.release()
		require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
	})
}

// Methods called from several goroutines while the handler returns (run
// with -race).
func TestDeadlineCtx_ConcurrentUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		defer cancel()
		c := newDeadlineCtx(parent, time.Now().Add(time.Second))
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				for j := range 100 {
					_ = c.Err()
					_ = c.Value(j)
					_, _ = c.Deadline()
					if j == i*10 {
						<-c.Done()
					}
					d, stop := context.WithTimeout(c, time.Minute)
					stop()
					<-d.Done()
				}
			})
		}
		c.release()
		wg.Wait()
		require.ErrorIs(t, c.Err(), context.Canceled)
	})
}
