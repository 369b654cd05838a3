// Tests of the handler's deadline context, in fake time: it behaves as context.WithDeadline would, and starts no timer until Done is asked.
package tcp

import (
	"context"
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
		require.Nil(t, c.armed, "nothing asked for Done: no timer")
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
