// Benchmarks for the bbolt-backed Store: durable Updates, serial and parallel (group commit), and Gets.
package bolt_test

import (
	"encoding/binary"
	"sync/atomic"
	"testing"

	"github.com/dynamo-kv/dynamo/storage/bolt"
)

// value1K is the 1 KiB value every benchmark writes.
var value1K = make([]byte, 1024)

// putValue is an Update fn storing value1K; the Store copies it.
func putValue([]byte) ([]byte, error) { return value1K, nil }

// key returns a benchmark key for i, spread over 16K keys so the tree has
// some depth without growing without bound.
func key(i uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte("bench/"), i%(16<<10))
}

// reportBatching adds the mean number of Updates per commit (per fsync).
func reportBatching(b *testing.B, s *bolt.Store) {
	st := s.Stats()
	if st.Commits > 0 {
		b.ReportMetric(float64(st.Updates)/float64(st.Commits), "updates/commit")
	}
}

func BenchmarkUpdate_Serial(b *testing.B) {
	s := open(b, b.TempDir(), nil)
	b.SetBytes(int64(len(value1K)))
	b.ResetTimer()
	var i uint64
	for b.Loop() {
		if err := s.Update(key(i), putValue); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.StopTimer()
	reportBatching(b, s)
}

func BenchmarkUpdate_Parallel(b *testing.B) {
	for _, bc := range []struct {
		name        string
		parallelism int // goroutines per GOMAXPROCS
	}{
		{"procs", 1},
		{"procs_x8", 8},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := open(b, b.TempDir(), nil)
			b.SetBytes(int64(len(value1K)))
			b.SetParallelism(bc.parallelism)
			var next atomic.Uint64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := s.Update(key(next.Add(1)), putValue); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			reportBatching(b, s)
		})
	}
}

// BenchmarkGet_Parallel reads 1 KiB values: in the memtable (the log has
// not rotated), and in bbolt (after a reopen checkpointed them).
func BenchmarkGet_Parallel(b *testing.B) {
	b.Run("memtable", func(b *testing.B) { benchmarkGet(b, false) })
	b.Run("bbolt", func(b *testing.B) { benchmarkGet(b, true) })
}

func benchmarkGet(b *testing.B, reopen bool) {
	dir := b.TempDir()
	s := open(b, dir, nil)
	for i := range uint64(16 << 10) {
		if err := s.Update(key(i), putValue); err != nil {
			b.Fatal(err)
		}
	}
	if reopen {
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		s = open(b, dir, nil)
	}
	b.SetBytes(int64(len(value1K)))
	var next atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Get(key(next.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
