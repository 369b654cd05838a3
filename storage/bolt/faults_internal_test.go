// Fault tests, white-box, through errorFS and the checkpoint's hook points: fsync errors (fsyncgate), ENOSPC and short writes, and a failure at every step of a checkpoint and of Open.
package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// faultStore opens dir/node.db through fs with opts.
func faultStore(t *testing.T, dir string, fs *errorFS, opts Options) *Store {
	t.Helper()
	opts.fs = fs
	return testOpen(t, dir, &opts)
}

// once returns an injector that fails the first operation match accepts
// with f, and reports it on the returned channel.
func once(f fault, match func(op faultOp, name string, p []byte) bool) (injector, <-chan struct{}) {
	var fired atomic.Bool
	done := make(chan struct{})
	return func(op faultOp, name string, p []byte) (fault, bool) {
		if !match(op, name, p) || !fired.CompareAndSwap(false, true) {
			return fault{}, false
		}
		close(done)
		return f, true
	}, done
}

// logSync matches a sync of a log segment; recordWrite the committer's
// writes of records (not zeros).
func logSync(op faultOp, _ string, _ []byte) bool { return op == opSync }
func recordWrite(op faultOp, _ string, p []byte) bool {
	return op == opWrite && !allZero(p)
}

// requireFailedForGood checks that every later Update fails with ErrFailed
// (carrying cause) without running its fn, although the file system works
// again.
func requireFailedForGood(t *testing.T, s *Store, cause error) {
	t.Helper()
	require.ErrorIs(t, s.Failed(), ErrFailed, "Failed reports the failure (storage.Failer)")
	require.ErrorIs(t, s.Failed(), cause)
	for i := range 5 {
		called := false
		err := s.Update(fmt.Appendf(nil, "after-%d", i), func([]byte) ([]byte, error) { called = true; return []byte("x"), nil })
		require.ErrorIs(t, err, ErrFailed)
		require.ErrorIs(t, err, cause, "ErrFailed carries the first failure")
		require.False(t, called)
	}
}

// TestFaults_LogFsyncEIO_NeverAcksAgain fails one fdatasync of the log
// with EIO: that Update fails, and the Store never acknowledges another
// write, though every later fsync would succeed (after a failed fsync the
// kernel may have dropped the dirty pages, and a later fsync does not say
// so). Reads go on; a reopen has every acknowledged write.
func TestFaults_LogFsyncEIO_NeverAcksAgain(t *testing.T) {
	dir := t.TempDir()
	fs := newErrorFS()
	s := faultStore(t, dir, fs, Options{LogSize: 16 << 10})
	model := map[string][]byte{}
	testWrites(t, s, model, rand.New(rand.NewPCG(1, 1)), "ok", 300)
	require.NoError(t, s.Failed())
	st := s.StorageStats()
	require.Equal(t, uint64(300), st.Updates)
	require.Positive(t, st.Commits)
	require.GreaterOrEqual(t, st.Syncs, st.Commits, "every commit fsyncs the log")
	require.Positive(t, st.SyncSeconds)
	require.Positive(t, st.Checkpoints, "300 writes fill a 16 KiB log segment")
	require.Positive(t, st.LogBytes+st.CheckpointLagBytes)

	inj, fired := once(fault{err: syscall.EIO}, logSync)
	fs.set(inj)
	err := s.Update([]byte("k001"), func([]byte) ([]byte, error) { return []byte("unacked"), nil })
	<-fired
	fs.set(nil)
	require.ErrorIs(t, err, syscall.EIO)
	require.ErrorContains(t, err, "log sync")
	requireFailedForGood(t, s, syscall.EIO)
	requireModel(t, s, model)
	require.NoError(t, s.Close())

	s = testOpen(t, dir, nil)
	// The unacknowledged write may or may not be there.
	if v, err := s.Get([]byte("k001")); err == nil && string(v) == "unacked" {
		model["k001"] = v
	}
	requireModel(t, s, model, "after-0")
}

// TestFaults_ZeroerFsyncEIO_NeverAcksAgain fails the fdatasync that follows
// a write of zeros, which the zeroer makes ahead of the records: the Store
// fails as if the committer's own sync had, since Linux reports a
// writeback error of the file to only one of the two.
func TestFaults_ZeroerFsyncEIO_NeverAcksAgain(t *testing.T) {
	dir := t.TempDir()
	fs := newErrorFS()
	s := faultStore(t, dir, fs, Options{LogSize: 64 << 10})
	var zeroed sync.Map // files with a write of zeros not yet synced
	inj, fired := once(fault{err: syscall.EIO}, func(op faultOp, name string, p []byte) bool {
		if op == opWrite && allZero(p) {
			zeroed.Store(name, true)
		}
		_, ok := zeroed.Load(name)
		return op == opSync && ok
	})
	fs.set(inj)
	model := map[string][]byte{}
	v := bytes.Repeat([]byte{'v'}, 100)
	var failed string // the key of the Update that failed
	for i := 0; ; i++ {
		require.Less(t, i, 10000, "the zeroer never synced")
		// An Update whose sync follows the zeroer's failed one fails; one
		// after it, certainly.
		k := fmt.Sprintf("k%04d", i)
		failed = k
		err := s.Update([]byte(k), func([]byte) ([]byte, error) { return v, nil })
		if err != nil {
			require.ErrorIs(t, err, syscall.EIO)
			break
		}
		model[k] = v
		select {
		case <-fired:
		default:
			continue
		}
		failed = "next"
		err = s.Update([]byte(failed), func([]byte) ([]byte, error) { return v, nil })
		require.ErrorIs(t, err, syscall.EIO)
		break
	}
	<-fired
	fs.set(nil)
	requireFailedForGood(t, s, syscall.EIO)
	require.NoError(t, s.Close())
	s = testOpen(t, dir, nil)
	// The unacknowledged write may or may not be there: its own sync
	// succeeded, after the zeroer's had failed.
	if got, err := s.Get([]byte(failed)); err == nil && got != nil {
		model[failed] = got
	}
	requireModel(t, s, model)
}

// TestFaults_WriteFails_BatchFailsCleanly fails a record's write with
// ENOSPC after part of it reached the file, and with a short write that
// reports no error: every Update of the batch fails, none of it is
// visible, the Store fails, and a reopen has every acknowledged write and
// nothing of the batch (its partial record is a torn tail).
func TestFaults_WriteFails_BatchFailsCleanly(t *testing.T) {
	for name, f := range map[string]fault{
		"ENOSPC":                  {err: syscall.ENOSPC},
		"ENOSPC after a part":     {err: syscall.ENOSPC, short: 100},
		"short write, no error":   {short: 100, lie: true},
		"short write, first byte": {short: 1, lie: true},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			fs := newErrorFS()
			s := faultStore(t, dir, fs, Options{LogSize: 16 << 10})
			model := map[string][]byte{}
			testWrites(t, s, model, rand.New(rand.NewPCG(2, 2)), "ok", 200)

			// Hold the committer on the next batch until eight Updates are
			// queued behind it, then fail that batch's write.
			var queued atomic.Int32
			allQueued := make(chan struct{})
			s.onEnqueue = func() {
				if queued.Add(1) == 8 {
					close(allQueued)
				}
			}
			var hold atomic.Bool
			hold.Store(true)
			s.beforeCommit = func() error {
				if hold.CompareAndSwap(true, false) {
					select {
					case <-allQueued:
					case <-time.After(10 * time.Second):
						return errors.New("the Updates never queued")
					}
				}
				return nil
			}
			inj, _ := once(f, recordWrite)
			fs.set(inj)
			errs := make(chan error, 8)
			for i := range 8 {
				go func() {
					errs <- s.Update(fmt.Appendf(nil, "batch-%d", i), func([]byte) ([]byte, error) {
						return bytes.Repeat([]byte{'b'}, 300), nil
					})
				}()
			}
			want := f.err
			if f.lie {
				want = io.ErrShortWrite
			}
			for range 8 {
				err := <-errs
				require.Error(t, err)
				require.True(t, errors.Is(err, want) || errors.Is(err, ErrFailed), "%v", err)
			}
			fs.set(nil)
			requireFailedForGood(t, s, want)
			requireModel(t, s, model, "batch-0", "batch-7")
			require.NoError(t, s.Close())
			s = testOpen(t, dir, nil)
			requireModel(t, s, model, "batch-0", "batch-7")
		})
	}
}

// TestFaults_OpenFails_ChangesNothing fails, in turn, each file operation
// of opening a new Store and of reopening one with a log to replay: Open
// fails with the injected error, and a plain Open then has every
// acknowledged write.
func TestFaults_OpenFails_ChangesNothing(t *testing.T) {
	// The operations Open does: on an existing database it only opens
	// files (its replay and checkpoint go through bbolt's own file).
	for _, tc := range []struct {
		op       faultOp
		existing bool
	}{{opOpen, false}, {opOpen, true}, {opWrite, false}, {opSync, false}, {opSyncDir, false}} {
		op, existing := tc.op, tc.existing
		t.Run(fmt.Sprintf("op=%d,existing=%t", op, existing), func(t *testing.T) {
			dir := t.TempDir()
			model := map[string][]byte{}
			if existing {
				s := testOpen(t, dir, &Options{LogSize: 16 << 10})
				testWrites(t, s, model, rand.New(rand.NewPCG(3, 3)), "ok", 200)
				require.NoError(t, Abandon(s))
			}
			fs := newErrorFS()
			inj, fired := once(fault{err: syscall.EIO}, func(o faultOp, _ string, _ []byte) bool { return o == op })
			fs.set(inj)
			s, err := Open(filepath.Join(dir, "node.db"), &Options{LogSize: 16 << 10, fs: fs})
			select {
			case <-fired:
				require.ErrorIs(t, err, syscall.EIO)
			default:
				if err == nil {
					_ = s.Close()
				}
				t.Fatalf("Open did not do operation %d (err %v): the table lists only operations it does", op, err)
			}
			s = testOpen(t, dir, nil)
			requireModel(t, s, model)
		})
	}
}

// TestFaults_CheckpointStepFails fails each step of a checkpoint in turn:
// of a rotation's checkpoint (in the background), of Close's, and of the
// one Open makes of the log it replays. The Store fails (no Update is
// acknowledged after), Close returns, and a plain reopen has every
// acknowledged write; after a failed Open, so does a plain Open. Chunks
// are small enough that a checkpoint takes several transactions.
func TestFaults_CheckpointStepFails(t *testing.T) {
	// A segment holds about 32 writes, its checkpoint two transactions.
	value := strings.Repeat("v", 16<<10)
	opts := Options{LogSize: 512 << 10}
	write := func(t *testing.T, s *Store, model map[string][]byte, tag string, n int) error {
		for i := range n {
			k := fmt.Sprintf("k%03d", i%40)
			v := []byte(tag + value)
			if err := s.Update([]byte(k), func([]byte) ([]byte, error) { return v, nil }); err != nil {
				return err
			}
			model[k] = v
		}
		return nil
	}
	failAt := func(st step, nth int) (func(step) error, *atomic.Int32) {
		var seen atomic.Int32
		return func(s step) error {
			if s == st && seen.Add(1) >= int32(nth) {
				return fmt.Errorf("injected at %s", s)
			}
			return nil
		}, &seen
	}
	steps := []step{stepRotate, stepChunkBegin, stepChunkPut, stepChunkCommit, stepChunkDone, stepCheckpointDone}
	for _, st := range steps {
		for _, nth := range []int{1, 2} {
			t.Run(fmt.Sprintf("rotation/%s#%d", st, nth), func(t *testing.T) {
				dir := t.TempDir()
				model := map[string][]byte{}
				hook, _ := failAt(st, nth)
				o := opts
				o.hook = hook
				s := testOpen(t, dir, &o)
				err := write(t, s, model, "a", 150)
				require.ErrorIs(t, err, ErrFailed, "a failed checkpoint fails the Store")
				require.ErrorContains(t, err, "injected at "+st.String())
				requireFailedForGood(t, s, ErrFailed)
				requireModel(t, s, model)
				require.NoError(t, s.Close())
				s = testOpen(t, dir, &opts)
				requireModel(t, s, model)
			})
		}
		if st == stepRotate {
			continue // Close and Open do not rotate
		}
		t.Run(fmt.Sprintf("close/%s", st), func(t *testing.T) {
			dir := t.TempDir()
			model := map[string][]byte{}
			var armed atomic.Bool
			inner, _ := failAt(st, 1)
			o := opts
			o.hook = func(s step) error {
				if !armed.Load() {
					return nil
				}
				return inner(s)
			}
			s := testOpen(t, dir, &o)
			require.NoError(t, write(t, s, model, "a", 24)) // no rotation yet
			armed.Store(true)
			require.ErrorContains(t, s.Close(), "injected at "+st.String())
			s = testOpen(t, dir, &opts)
			requireModel(t, s, model)
		})
		t.Run(fmt.Sprintf("open/%s", st), func(t *testing.T) {
			dir := t.TempDir()
			model := map[string][]byte{}
			s := testOpen(t, dir, &opts)
			require.NoError(t, write(t, s, model, "a", 80))
			require.NoError(t, Abandon(s))
			hook, _ := failAt(st, 1)
			o := opts
			o.hook = hook
			_, err := Open(filepath.Join(dir, "node.db"), &o)
			require.ErrorContains(t, err, "injected at "+st.String())
			s = testOpen(t, dir, &opts)
			requireModel(t, s, model)
		})
	}
	for _, st := range []step{stepRecoverRead, stepRecoverPrepare} {
		t.Run(fmt.Sprintf("open/%s", st), func(t *testing.T) {
			dir := t.TempDir()
			model := map[string][]byte{}
			if st == stepRecoverRead {
				s := testOpen(t, dir, &opts)
				require.NoError(t, write(t, s, model, "a", 80))
				require.NoError(t, Abandon(s))
			}
			hook, _ := failAt(st, 1)
			o := opts
			o.hook = hook
			require.ErrorContains(t, openFails(t, dir, &o), "injected at "+st.String())
			s := testOpen(t, dir, &opts)
			requireModel(t, s, model)
		})
	}
}

// TestFaults_UpdateStaged_StagedThenFsyncFails: UpdateStaged reports a
// result staged once fn has returned it, before the log is fsynced; when
// that fsync fails, the staged result is still refused (the Update fails)
// and the Store acknowledges nothing more. A fn that fails is never
// reported staged, and a staged result that commits is the key's value.
func TestFaults_UpdateStaged_StagedThenFsyncFails(t *testing.T) {
	dir := t.TempDir()
	fs := newErrorFS()
	s := faultStore(t, dir, fs, Options{})

	var staged int
	err := s.UpdateStaged([]byte("a"), func([]byte) ([]byte, error) { return nil, errors.New("no") }, func() { staged++ })
	require.Error(t, err)
	require.Zero(t, staged, "a failed fn is not staged")

	err = s.UpdateStaged([]byte("a"), func([]byte) ([]byte, error) { return []byte("1"), nil }, func() { staged++ })
	require.NoError(t, err)
	require.Equal(t, 1, staged)
	v, err := s.Get([]byte("a"))
	require.NoError(t, err)
	require.Equal(t, "1", string(v))

	// The fault hits the first sync that follows a record written after
	// the result was staged: the commit that carries it.
	var armed, written atomic.Bool
	inj, fired := once(fault{err: syscall.EIO}, func(op faultOp, name string, p []byte) bool {
		if armed.Load() && recordWrite(op, name, p) {
			written.Store(true)
		}
		return op == opSync && written.Load()
	})
	fs.set(inj)
	err = s.UpdateStaged([]byte("a"), func([]byte) ([]byte, error) { return []byte("2"), nil }, func() {
		staged++
		armed.Store(true)
	})
	<-fired
	fs.set(nil)
	require.ErrorIs(t, err, syscall.EIO, "a staged result whose commit fails is refused")
	require.Equal(t, 2, staged)
	requireFailedForGood(t, s, syscall.EIO)
}
