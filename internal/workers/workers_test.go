package workers

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// Tasks run one after another reuse one worker; a task that arrives while
// every worker is busy gets a new one; workers leave after done closes.
func TestPool_ReusesWorkers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		done := make(chan struct{})
		var wg sync.WaitGroup
		p := New(done, &wg, time.Minute)
		base := runtime.NumGoroutine()
		var ran atomic.Int32
		for range 100 {
			p.Go(func() { ran.Add(1) })
			synctest.Wait() // the worker is idle again
		}
		require.Equal(t, int32(100), ran.Load())
		require.Equal(t, base+1, runtime.NumGoroutine(), "one worker ran all hundred")

		release := make(chan struct{})
		for range 3 {
			p.Go(func() { <-release })
		}
		synctest.Wait()
		require.Equal(t, base+3, runtime.NumGoroutine(), "three tasks at once took three workers")
		close(release)
		synctest.Wait()

		close(done)
		wg.Wait()
		require.Equal(t, base, runtime.NumGoroutine())
		p.Go(func() { ran.Add(1) }) // after done: still runs
		wg.Wait()
		require.Equal(t, int32(101), ran.Load())
	})
}

// A worker with no task for idle to 2×idle exits; one kept busy stays.
func TestPool_IdleWorkersExit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		done := make(chan struct{})
		defer close(done)
		var wg sync.WaitGroup
		p := New(done, &wg, time.Second)
		base := runtime.NumGoroutine()
		p.Go(func() {})
		for range 10 { // a task every half idle period: the worker stays
			time.Sleep(500 * time.Millisecond)
			synctest.Wait()
			require.Equal(t, base+1, runtime.NumGoroutine())
			p.Go(func() {})
		}
		time.Sleep(2*time.Second + time.Millisecond)
		synctest.Wait()
		require.Equal(t, base, runtime.NumGoroutine(), "the idle worker exited")
		wg.Wait()
	})
}
