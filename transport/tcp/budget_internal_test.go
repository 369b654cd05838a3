// Tests of the read budget and of payload reads that reserve as bytes arrive, in fake time.
package tcp

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/transport"
)

func TestBudget_WaitsForRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(100)
		done := make(chan struct{})
		require.NoError(t, b.reserve(60, time.Now().Add(time.Second), done))
		got := make(chan error, 1)
		go func() { got <- b.reserve(50, time.Now().Add(time.Second), done) }()
		synctest.Wait()
		select {
		case err := <-got:
			t.Fatalf("reserved past the budget: %v", err)
		default:
		}
		require.EqualValues(t, 60, b.reserved())
		b.release(60)
		require.NoError(t, <-got)
		require.EqualValues(t, 50, b.reserved())
	})
}

func TestBudget_GivesUpAtDeadlineOrClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(10)
		done := make(chan struct{})
		require.True(t, b.tryReserve(10))
		start := time.Now()
		require.ErrorIs(t, b.reserve(1, start.Add(time.Second), done), errBudget)
		require.Equal(t, time.Second, time.Since(start))

		got := make(chan error, 1)
		go func() { got <- b.reserve(1, time.Now().Add(time.Hour), done) }()
		synctest.Wait()
		close(done)
		require.ErrorIs(t, <-got, transport.ErrClosed)
		require.EqualValues(t, 10, b.reserved(), "a failed reserve must not keep anything")
	})
}

func TestBudget_NeverOverCommitted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const max = 1000
		b := newBudget(max)
		done := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		held := int64(0) // what the goroutines hold, by their own count
		for i := range 20 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(i), 1))
				for range 200 {
					n := int64(1 + r.IntN(400))
					if err := b.reserve(n, time.Now().Add(time.Minute), done); err != nil {
						t.Errorf("reserve %d: %v", n, err)
						return
					}
					mu.Lock()
					held += n
					if held > max {
						t.Errorf("%d bytes held under a budget of %d", held, max)
					}
					mu.Unlock()
					time.Sleep(time.Duration(r.IntN(5)) * time.Millisecond) // fake time: holds the bytes a while
					mu.Lock()
					held -= n
					mu.Unlock()
					b.release(n)
				}
			})
		}
		wg.Wait()
		require.Zero(t, b.reserved())
	})
}

func TestBudget_NilReservesNothing(t *testing.T) {
	var b *budget
	require.NoError(t, b.reserve(1<<40, time.Time{}, nil))
	b.release(1 << 40)
}

// A payload announced at 16 MiB reserves only about what has come: never
// more than twice the bytes sent, or 4 KiB.
func TestReadPayload_ReservesAsBytesArrive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const announced = 16 << 20
		pr, pw := io.Pipe()
		b := newBudget(64 << 20)
		type out struct {
			payload  []byte
			reserved int64
			err      error
		}
		got := make(chan out, 1)
		go func() {
			p, n, err := readPayload(bufio.NewReaderSize(pr, bufSize), announced, b, time.Now().Add(time.Hour), nil)
			got <- out{p, n, err}
		}()
		synctest.Wait()
		require.Zero(t, b.reserved(), "reserved before any payload byte came")

		sent := 0
		for _, n := range []int{10, 1000, 100 << 10, 1 << 20} {
			_, err := pw.Write(bytes.Repeat([]byte{'x'}, n))
			require.NoError(t, err)
			sent += n
			synctest.Wait()
			require.LessOrEqual(t, b.reserved(), int64(max(2*sent, 1<<minGrowShift)), "after %d bytes sent", sent)
			require.GreaterOrEqual(t, b.reserved(), int64(sent))
		}
		require.NoError(t, pw.CloseWithError(io.ErrUnexpectedEOF))
		r := <-got
		require.ErrorIs(t, r.err, io.ErrUnexpectedEOF)
		require.Zero(t, b.reserved(), "a failed read gives back what it reserved")
	})
}

func TestReadPayload_WholeFrame(t *testing.T) {
	for _, n := range []int{1, 1000, bufSize, bufSize + 1, 5*bufSize + 7, 1 << 20} {
		want := make([]byte, n)
		for i := range want {
			want[i] = byte(i * 7)
		}
		b := newBudget(1 << 30)
		br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(want), bytes.NewReader([]byte("next frame"))), bufSize)
		got, reserved, err := readPayload(br, n, b, time.Now().Add(time.Minute), nil)
		require.NoError(t, err)
		require.Equal(t, want, got)
		require.Equal(t, int64(cap(got)), reserved)
		require.Equal(t, reserved, b.reserved())
		require.Equal(t, n, cap(got), "the buffer ends exactly at the payload")
		rest, err := io.ReadAll(br)
		require.NoError(t, err)
		require.Equal(t, "next frame", string(rest), "read past the payload")
	}
}

func TestReadPayload_WaitsForBudgetUntilDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(100)
		require.True(t, b.tryReserve(100))
		br := bufio.NewReader(bytes.NewReader(make([]byte, 50)))
		start := time.Now()
		_, _, err := readPayload(br, 50, b, start.Add(3*time.Second), nil)
		require.ErrorIs(t, err, errBudget)
		require.Equal(t, 3*time.Second, time.Since(start))
		require.EqualValues(t, 100, b.reserved())
	})
}

// Buffers a payload outgrows go back to their pools; the payload itself is
// never pooled.
func TestReadPayload_OutgrownBuffersPooled(t *testing.T) {
	n := 1<<20 + 1
	src := bytes.Repeat([]byte{'z'}, n)
	br := bufio.NewReaderSize(bytes.NewReader(src), bufSize)
	got, _, err := readPayload(br, n, nil, time.Now().Add(time.Minute), nil)
	require.NoError(t, err)
	require.Equal(t, src, got)
	require.Equal(t, -1, growClass(cap(got)))
	pooled := growBuf(1 << 20)
	require.Equal(t, 1<<20, cap(pooled))
	require.Empty(t, pooled)
	require.Equal(t, -1, growClass(3<<12))
	require.Equal(t, -1, growClass(1<<11))
	require.Equal(t, -1, growClass(1<<24))
	require.Equal(t, 0, growClass(1<<12))
}
