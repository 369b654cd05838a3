// Tests for the write-ahead log, black-box: replay after a crash-like close, a model-based random walk, concurrent readers across rotations, and files made before the log existed.
package bolt_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/dynamo-kv/dynamo/storage"
	"github.com/dynamo-kv/dynamo/storage/bolt"
)

// walLogSize is a log segment small enough that the tests below rotate
// and checkpoint many times.
const walLogSize = 16 << 10

// kv is one key and value as ForEach reports them.
type kv struct {
	key   string
	value []byte
}

// modelPrefix returns, in byte order, the entries of model whose key starts
// with prefix.
func modelPrefix(model map[string][]byte, prefix []byte) []kv {
	var out []kv
	for k, v := range model {
		if bytes.HasPrefix([]byte(k), prefix) {
			out = append(out, kv{k, v})
		}
	}
	slices.SortFunc(out, func(a, b kv) int { return bytes.Compare([]byte(a.key), []byte(b.key)) })
	return out
}

// requirePrefix checks that ForEach(prefix) visits exactly model's keys
// with prefix, in byte order, with their values.
func requirePrefix(t *testing.T, s storage.Storage, model map[string][]byte, prefix []byte) {
	t.Helper()
	var got []kv
	require.NoError(t, s.ForEach(prefix, func(k, v []byte) error {
		got = append(got, kv{string(k), bytes.Clone(v)})
		return nil
	}))
	want := modelPrefix(model, prefix)
	require.Equal(t, len(want), len(got), "ForEach(%q) visited %d keys, want %d", prefix, len(got), len(want))
	for i := range want {
		require.Equal(t, want[i].key, got[i].key, "ForEach(%q): key %d", prefix, i)
		require.Equal(t, want[i].value, got[i].value, "ForEach(%q): value of %q", prefix, want[i].key)
	}
}

// requireGet checks that Get(key) returns model's value: nil when absent,
// non-nil (empty for an empty value) when present.
func requireGet(t *testing.T, s storage.Storage, model map[string][]byte, key string) {
	t.Helper()
	got, err := s.Get([]byte(key))
	require.NoError(t, err, "Get(%q)", key)
	want, ok := model[key]
	if !ok {
		require.Nil(t, got, "Get(%q): the key was deleted or never written", key)
		return
	}
	require.NotNil(t, got, "Get(%q): want %d bytes, the key is missing", key, len(want))
	require.Equal(t, want, got, "Get(%q)", key)
}

// requireHolds checks that s holds exactly model: Get of every probe
// (present in model or not) and a full ForEach.
func requireHolds(t *testing.T, s storage.Storage, model map[string][]byte, probes []string) {
	t.Helper()
	for _, k := range probes {
		requireGet(t, s, model, k)
	}
	requirePrefix(t, s, model, nil)
}

// put stores value under key and records it in model.
func put(t *testing.T, s storage.Storage, model map[string][]byte, key string, value []byte) {
	t.Helper()
	require.NoError(t, s.Update([]byte(key), func([]byte) ([]byte, error) { return value, nil }))
	model[key] = bytes.Clone(value)
}

// del deletes key and records it in model.
func del(t *testing.T, s storage.Storage, model map[string][]byte, key string) {
	t.Helper()
	require.NoError(t, s.Update([]byte(key), func([]byte) ([]byte, error) { return nil, nil }))
	delete(model, key)
}

// TestWAL_Replay_AbandonReopen_LastAckedValues writes overwrites and
// deletes through many rotations, abandons the Store (no final checkpoint,
// as after a crash) and reopens it: every key has its last acknowledged
// value, deleted keys are gone (also those whose older value is in bbolt),
// and ForEach lists exactly the live keys. Four rounds on the same files,
// so each round replays over a reused log.
func TestWAL_Replay_AbandonReopen_LastAckedValues(t *testing.T) {
	dir := t.TempDir()
	opts := &bolt.Options{LogSize: walLogSize}
	rng := rand.New(rand.NewPCG(1, 2))
	const keys = 200
	probes := make([]string, keys)
	for i := range probes {
		probes[i] = fmt.Sprintf("k%03d", i)
	}
	model := map[string][]byte{}
	s := open(t, dir, opts)
	for round := range 4 {
		for i := range 700 {
			key := probes[rng.IntN(keys)]
			if rng.IntN(5) == 0 {
				del(t, s, model, key)
				continue
			}
			// The value names its key and write, so a mix-up cannot pass.
			v := fmt.Appendf(nil, "%s@%d.%d|", key, round, i)
			put(t, s, model, key, append(v, bytes.Repeat([]byte{byte('a' + i%26)}, rng.IntN(160))...))
		}
		// One small write after the last rotation, so the log surely holds
		// changes bbolt lacks.
		put(t, s, model, "last", fmt.Appendf(nil, "round %d", round))
		require.NoError(t, bolt.Abandon(s))
		require.GreaterOrEqual(t, s.Stats().Checkpoints, uint64(3), "round %d: the log must have rotated several times", round)

		s = open(t, dir, opts)
		require.Equal(t, uint64(1), s.Stats().Checkpoints, "round %d: Open must replay what Abandon left in the log", round)
		requireHolds(t, s, model, append(probes, "last"))
	}
	// A clean Close leaves nothing to replay.
	require.NoError(t, s.Close())
	s = open(t, dir, opts)
	require.Zero(t, s.Stats().Checkpoints, "Open after a clean Close replayed the log")
	requireHolds(t, s, model, probes)
}

// TestWAL_Replay_OneRecord_LastChangeWins queues several changes of the
// same keys behind a blocked Update so they share one batch, and so one log
// record, then abandons the Store: replay must apply the record's changes
// in order, including deletes of keys bbolt holds and an empty value.
func TestWAL_Replay_OneRecord_LastChangeWins(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	model := map[string][]byte{}
	put(t, s, model, "d", []byte("in bbolt"))
	put(t, s, model, "e", []byte("in bbolt"))
	require.NoError(t, s.Close()) // checkpoints d and e into bbolt

	s = open(t, dir, nil)
	queued := enqueued(s)
	b := block(s, "first")
	<-queued
	commits := s.Stats().Commits
	value := func(v string) func([]byte) ([]byte, error) {
		return func([]byte) ([]byte, error) {
			if v == "<nil>" {
				return nil, nil
			}
			return []byte(v), nil
		}
	}
	changes := []struct{ key, value string }{
		{"k", "v1"}, {"k", "v2"}, {"d", "<nil>"}, {"e", "<nil>"}, {"e", ""},
		{"f", "x"}, {"f", "<nil>"}, {"g", "<nil>"}, {"g", "back"}, {"k", "v3"},
	}
	var results []<-chan error
	for _, c := range changes {
		results = append(results, async(s, queued, c.key, value(c.value)))
	}
	b.unblock(t)
	for i, res := range results {
		require.NoError(t, <-res, "change %d", i)
	}
	require.Equal(t, commits+2, s.Stats().Commits, "the queued changes must share one commit")
	require.NoError(t, bolt.Abandon(s))

	s = open(t, dir, nil)
	require.Equal(t, uint64(1), s.Stats().Checkpoints, "Open must replay the record")
	model = map[string][]byte{"first": []byte("blocker"), "k": []byte("v3"), "e": {}, "g": []byte("back")}
	requireHolds(t, s, model, []string{"d", "e", "f", "g", "k", "first"})
}

// TestWAL_Model_Randomized drives a Store with a seeded random mix of
// puts (empty values included), deletes, failing fns, concurrent batches,
// Gets, ForEach over random prefixes and early-stopped ForEach, with
// occasional crash-like and clean reopens, and compares it with a map after
// every step; the whole content is compared every 100 steps. The log is
// small, so changes sit in the active memtable, the one being checkpointed
// and bbolt at once. Each fn also checks that it is given the model's
// current value.
func TestWAL_Model_Randomized(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			testModel(t, seed, 2500)
		})
	}
}

func testModel(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	dir := t.TempDir()
	opts := &bolt.Options{LogSize: 4 << 10, MaxBatch: 1 + rng.IntN(8)}

	// Keys over a small alphabet, so that many share prefixes; 0x00 and
	// 0xff check the byte order.
	alphabet := []byte{'a', 'b', 0x00, 0xff}
	seen := map[string]bool{}
	var keys []string
	for len(keys) < 60 {
		k := make([]byte, 1+rng.IntN(4))
		for i := range k {
			k[i] = alphabet[rng.IntN(len(alphabet))]
		}
		if !seen[string(k)] {
			seen[string(k)] = true
			keys = append(keys, string(k))
		}
	}
	randKey := func() string { return keys[rng.IntN(len(keys))] }
	randValue := func() []byte {
		if rng.IntN(8) == 0 {
			return []byte{}
		}
		v := make([]byte, rng.IntN(300))
		for i := range v {
			v[i] = byte(rng.Uint32())
		}
		return v
	}
	randPrefix := func() []byte {
		switch rng.IntN(4) {
		case 0:
			return nil
		case 1:
			return []byte{}
		case 2:
			k := randKey()
			return []byte(k[:rng.IntN(len(k)+1)])
		default:
			p := make([]byte, 1+rng.IntN(2))
			for i := range p {
				p[i] = alphabet[rng.IntN(len(alphabet))]
			}
			return p
		}
	}

	model := map[string][]byte{}
	// expect returns an Update fn that checks it is handed model's current
	// value of key (recording a mismatch in *bad) and returns next. It must
	// be made before model changes for this Update.
	expect := func(key string, bad *error, next []byte, err error) func([]byte) ([]byte, error) {
		want, ok := model[key]
		return func(cur []byte) ([]byte, error) {
			if (cur != nil) != ok || !bytes.Equal(cur, want) {
				*bad = fmt.Errorf("fn of %q got current %q (nil: %t), want %q (present: %t)", key, cur, cur == nil, want, ok)
			}
			return next, err
		}
	}
	errFn := errors.New("fn refuses")
	s := open(t, dir, opts)
	var (
		reopens, crashes int
		checkpoints      uint64 // of the Stores closed so far
	)
	for step := range steps {
		var bad error
		switch op := rng.IntN(1000); {
		case op < 420: // put
			k, v := randKey(), randValue()
			require.NoError(t, s.Update([]byte(k), expect(k, &bad, v, nil)), "step %d", step)
			model[k] = v
		case op < 570: // delete
			k := randKey()
			require.NoError(t, s.Update([]byte(k), expect(k, &bad, nil, nil)), "step %d", step)
			delete(model, k)
		case op < 620: // fn fails: nothing changes
			k := randKey()
			err := s.Update([]byte(k), expect(k, &bad, []byte("never stored"), errFn))
			require.ErrorIs(t, err, errFn, "step %d", step)
		case op < 650: // a concurrent batch of distinct keys, likely one record
			n := 2 + rng.IntN(6)
			batch := map[string][]byte{}
			for len(batch) < n {
				k := randKey()
				if rng.IntN(4) == 0 {
					batch[k] = nil
				} else {
					batch[k] = randValue()
				}
			}
			var wg sync.WaitGroup
			errs := make(map[string]*[2]error, n) // Update's error, the fn's mismatch
			for k, v := range batch {
				e := new([2]error)
				errs[k] = e
				fn := expect(k, &e[1], v, nil)
				wg.Go(func() { e[0] = s.Update([]byte(k), fn) })
			}
			wg.Wait()
			for k, v := range batch {
				require.NoError(t, errs[k][0], "step %d: batch update of %q", step, k)
				require.NoError(t, errs[k][1], "step %d", step)
				if v == nil {
					delete(model, k)
				} else {
					model[k] = v
				}
			}
		case op < 850:
			requireGet(t, s, model, randKey())
		case op < 960:
			requirePrefix(t, s, model, randPrefix())
		case op < 980: // ForEach stops at fn's first error
			prefix := randPrefix()
			want := modelPrefix(model, prefix)
			stop := rng.IntN(len(want) + 1)
			errStop := errors.New("stop")
			var got []string
			err := s.ForEach(prefix, func(k, _ []byte) error {
				if len(got) == stop {
					return errStop
				}
				got = append(got, string(k))
				return nil
			})
			if stop < len(want) {
				require.ErrorIs(t, err, errStop, "step %d", step)
			} else {
				require.NoError(t, err, "step %d", step)
			}
			for i, k := range got {
				require.Equal(t, want[i].key, k, "step %d: ForEach(%q) key %d", step, prefix, i)
			}
		case op < 984:
			checkpoints += s.Stats().Checkpoints
			require.NoError(t, bolt.Abandon(s), "step %d", step)
			s = open(t, dir, opts)
			crashes++
		case op < 988:
			checkpoints += s.Stats().Checkpoints
			require.NoError(t, s.Close(), "step %d", step)
			s = open(t, dir, opts)
			reopens++
		default:
			requirePrefix(t, s, model, nil)
		}
		require.NoError(t, bad, "step %d", step)
		if step%100 == 99 {
			requireHolds(t, s, model, keys)
		}
	}
	requireHolds(t, s, model, keys)
	checkpoints += s.Stats().Checkpoints
	require.NoError(t, bolt.Abandon(s))
	s = open(t, dir, opts)
	requireHolds(t, s, model, keys)
	t.Logf("%d steps, %d live keys, %d abandoned and %d clean reopens, %d checkpoints",
		steps, len(model), crashes, reopens, checkpoints)
	require.Greater(t, checkpoints, uint64(steps/100), "the log must rotate often")
}

// concValue is the value of counter n of key: the key, '=', n, ':', then
// padding derived from n, so that a torn or misplaced value does not parse.
func concValue(key string, n uint64) []byte {
	v := fmt.Appendf(nil, "%s=%d:", key, n)
	return append(v, bytes.Repeat([]byte{byte('a' + n%26)}, int(n%97))...)
}

// concCounter parses a value written by concValue for key; nil is 0.
func concCounter(key string, v []byte) (uint64, error) {
	if v == nil {
		return 0, nil
	}
	rest, ok := bytes.CutPrefix(v, []byte(key+"="))
	if !ok {
		return 0, fmt.Errorf("value %.60q of key %q names another key", v, key)
	}
	digits, _, ok := bytes.Cut(rest, []byte{':'})
	if !ok {
		return 0, fmt.Errorf("value %.60q of key %q has no ':'", v, key)
	}
	n, err := strconv.ParseUint(string(digits), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("value %.60q of key %q: %w", v, key, err)
	}
	if !bytes.Equal(v, concValue(key, n)) {
		return 0, fmt.Errorf("value %.60q of key %q is damaged", v, key)
	}
	return n, nil
}

// TestWAL_Concurrent_ReadersDuringRotations runs writers, each incrementing
// counters under its own keys (and putting and deleting others), against
// readers doing Get and ForEach over assorted prefixes, with a log small
// enough that rotations and checkpoints run all along. Readers check that
// every value is well-formed, that ForEach visits keys with the prefix in
// strictly increasing order, that every write acknowledged before a read
// started is visible to it, that no counter goes past what was attempted,
// and that a reader never sees a key's counter go back.
func TestWAL_Concurrent_ReadersDuringRotations(t *testing.T) {
	dir := t.TempDir()
	opts := &bolt.Options{LogSize: 4 << 10}
	s := open(t, dir, opts)
	const writers, keysPerWriter, updatesPerWriter, readers = 4, 16, 400, 3
	key := func(w, i int) string { return fmt.Sprintf("w%d-k%02d", w, i) }
	scratch := func(w, i int) string { return fmt.Sprintf("w%d-x%02d", w, i) }
	var acked, attempted [writers][keysPerWriter]atomic.Uint64
	owner := map[string][2]int{} // counter key -> writer, index; read-only once the goroutines start
	for w := range writers {
		for i := range keysPerWriter {
			owner[key(w, i)] = [2]int{w, i}
		}
	}

	done := make(chan struct{})
	var gets, scans atomic.Int64
	var writersWG, readersWG sync.WaitGroup
	for w := range writers {
		writersWG.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range updatesPerWriter {
				i := rng.IntN(keysPerWriter)
				if rng.IntN(4) == 0 { // a key that comes and goes
					k := scratch(w, i)
					var next []byte
					if rng.IntN(2) == 0 {
						next = concValue(k, 1+uint64(rng.IntN(1000)))
					}
					if err := s.Update([]byte(k), func([]byte) ([]byte, error) { return next, nil }); err != nil {
						t.Errorf("update %s: %v", k, err)
						return
					}
					continue
				}
				k := key(w, i)
				want := acked[w][i].Load()
				attempted[w][i].Store(want + 1)
				err := s.Update([]byte(k), func(cur []byte) ([]byte, error) {
					n, err := concCounter(k, cur)
					if err != nil {
						return nil, err
					}
					if n != want {
						return nil, fmt.Errorf("fn of %s got counter %d, want %d", k, n, want)
					}
					return concValue(k, n+1), nil
				})
				if err != nil {
					t.Errorf("update %s: %v", k, err)
					return
				}
				acked[w][i].Store(want + 1)
			}
		})
	}
	prefixes := []string{"", "w", "w1", "w2-k", "w3-x", "w0-k0", "w1-k15", "w4", "x", "\xff"}
	for r := range readers {
		readersWG.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 8))
			last := map[string]uint64{} // the highest counter this reader saw
			check := func(k string, v []byte, floor uint64) error {
				n, err := concCounter(k, v)
				if err != nil {
					return err
				}
				wi, isCounter := owner[k]
				if !isCounter {
					return nil
				}
				if n < floor {
					return fmt.Errorf("%s: read counter %d, but %d was acknowledged before the read", k, n, floor)
				}
				if n < last[k] {
					return fmt.Errorf("%s: read counter %d after reading %d", k, n, last[k])
				}
				if top := attempted[wi[0]][wi[1]].Load(); n > top {
					return fmt.Errorf("%s: read counter %d, but only %d was attempted", k, n, top)
				}
				last[k] = n
				return nil
			}
			for {
				select {
				case <-done:
					return
				default:
				}
				// The committer yields to gather batches: a reader that
				// never yields would, on one processor, hold each of its
				// yields for a whole time slice.
				runtime.Gosched()
				if rng.IntN(3) > 0 {
					w, i := rng.IntN(writers), rng.IntN(keysPerWriter)
					k := key(w, i)
					if rng.IntN(4) == 0 {
						k = scratch(w, i)
					}
					floor := acked[w][i].Load()
					v, err := s.Get([]byte(k))
					gets.Add(1)
					if err == nil {
						err = check(k, v, floor)
					}
					if err != nil {
						t.Errorf("get: %v", err)
						return
					}
					continue
				}
				prefix := prefixes[rng.IntN(len(prefixes))]
				var floors [writers][keysPerWriter]uint64
				for w := range writers {
					for i := range keysPerWriter {
						floors[w][i] = acked[w][i].Load()
					}
				}
				var prev []byte
				visited := map[string]bool{}
				err := s.ForEach([]byte(prefix), func(k, v []byte) error {
					if !bytes.HasPrefix(k, []byte(prefix)) {
						return fmt.Errorf("ForEach(%q) visited %q", prefix, k)
					}
					if prev != nil && bytes.Compare(prev, k) >= 0 {
						return fmt.Errorf("ForEach(%q) visited %q after %q", prefix, k, prev)
					}
					prev = append(prev[:0], k...)
					var floor uint64
					if wi, ok := owner[string(k)]; ok {
						floor = floors[wi[0]][wi[1]]
						visited[string(k)] = true
					}
					return check(string(k), v, floor)
				})
				scans.Add(1)
				if err != nil {
					t.Errorf("for each: %v", err)
					return
				}
				for k, wi := range owner {
					if floors[wi[0]][wi[1]] > 0 && bytes.HasPrefix([]byte(k), []byte(prefix)) && !visited[k] {
						t.Errorf("ForEach(%q) missed %s, acknowledged before it began", prefix, k)
						return
					}
				}
			}
		})
	}
	writersWG.Wait()
	close(done)
	readersWG.Wait()
	if t.Failed() {
		return
	}
	st := s.Stats()
	t.Logf("%d updates in %d commits, %d checkpoints; %d Gets and %d ForEach meanwhile",
		st.Updates, st.Commits, st.Checkpoints, gets.Load(), scans.Load())
	require.GreaterOrEqual(t, st.Checkpoints, uint64(4), "the log must have rotated while readers ran")

	// Everything acknowledged survives a crash-like close.
	require.NoError(t, bolt.Abandon(s))
	s = open(t, dir, opts)
	for w := range writers {
		for i := range keysPerWriter {
			v, err := s.Get([]byte(key(w, i)))
			require.NoError(t, err)
			n, err := concCounter(key(w, i), v)
			require.NoError(t, err)
			require.Equal(t, acked[w][i].Load(), n, "key %s after reopen", key(w, i))
		}
	}
}

// TestWAL_Open_FileFromBeforeTheLog opens a bbolt file that has only the
// "dynamo" bucket, as the Store wrote before it had a log: no metadata
// bucket and no log segments. Its data must read back, and the Store must
// then work as usual, replay included.
func TestWAL_Open_FileFromBeforeTheLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.db")
	model := map[string][]byte{"a": []byte("1"), "b/x": []byte("2"), "b/y": {}, "c": bytes.Repeat([]byte("v"), 5000)}
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("dynamo"))
		if err != nil {
			return err
		}
		for k, v := range model {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	}))
	require.NoError(t, db.Close())
	matches, err := filepath.Glob(path + ".wal*")
	require.NoError(t, err)
	require.Empty(t, matches)

	probes := []string{"a", "b/x", "b/y", "c", "d"}
	s := open(t, dir, nil)
	requireHolds(t, s, model, probes)
	requirePrefix(t, s, model, []byte("b/"))

	put(t, s, model, "d", []byte("new"))
	del(t, s, model, "a")
	put(t, s, model, "b/x", []byte("changed"))
	requireHolds(t, s, model, probes)
	require.NoError(t, bolt.Abandon(s))

	s = open(t, dir, nil)
	require.Equal(t, uint64(1), s.Stats().Checkpoints, "Open must replay the log")
	requireHolds(t, s, model, probes)
	put(t, s, model, "e", []byte("after replay"))
	require.NoError(t, s.Close())

	s = open(t, dir, nil)
	requireHolds(t, s, model, append(probes, "e"))
}
