// Tests of the accept loop's back-off on failures such as EMFILE, in fake time.
package tcp

import (
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// failingListener fails every Accept with EMFILE, counting the calls, until
// closed.
type failingListener struct {
	mu     sync.Mutex
	calls  []time.Time
	closed chan struct{}
}

func (l *failingListener) Accept() (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, net.ErrClosed
	default:
	}
	l.mu.Lock()
	l.calls = append(l.calls, time.Now())
	l.mu.Unlock()
	return nil, &net.OpError{Op: "accept", Net: "tcp", Err: fmt.Errorf("accept4: %w", syscall.EMFILE)}
}

func (l *failingListener) Close() error {
	close(l.closed)
	return nil
}

func (l *failingListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

func TestAcceptLoop_BacksOffOnEMFILE(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ln := &failingListener{closed: make(chan struct{})}
		tr := serve(ln, Options{})
		time.Sleep(5 * time.Second) // fake time: the loop's timers fire as they would
		synctest.Wait()
		ln.mu.Lock()
		calls := append([]time.Time(nil), ln.calls...)
		ln.mu.Unlock()
		// 5 ms doubling to 1 s: 9 tries in the first 1.3 s, then one a second.
		require.GreaterOrEqual(t, len(calls), 10, "the loop stopped trying")
		require.LessOrEqual(t, len(calls), 14, "the loop spins")
		for i := 1; i < len(calls); i++ {
			gap := calls[i].Sub(calls[i-1])
			require.GreaterOrEqual(t, gap, minAcceptBackoff)
			require.LessOrEqual(t, gap, maxAcceptBackoff)
		}
		require.EqualValues(t, len(calls), tr.Stats().AcceptErrors)
		require.NoError(t, tr.Close())
	})
}
