// The disk under the Store, measured alone: how long one fdatasync takes when three logs share the disk.

//go:build linux

package bolt_test

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkDisk_Fdatasync3 measures the disk under the Store, not the
// Store: three goroutines, as three nodes' logs on one machine, each
// overwriting 8 KiB blocks of a preallocated file and fdatasyncing after
// every write, one op per sync. It reports the percentiles of one sync: a
// durable write can be no faster, and its tail no shorter, than the disk's
// (docs/overwrite.md). Run it with -benchtime=2000x or more for a p99.9.
// shared-stalls is the share of the syncs over 5 ms that overlapped in
// time with a sync over 5 ms of another file: near 1, the disk's stalls
// hit every log at once, and a quorum of replicas on this disk cannot
// step around them.
func BenchmarkDisk_Fdatasync3(b *testing.B) {
	const files, block, blocks = 3, 8 << 10, 4096
	fs := make([]*os.File, files)
	buf := make([]byte, block)
	for i := range fs {
		f, err := os.Create(filepath.Join(b.TempDir(), fmt.Sprintf("sync%d", i)))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		for j := range blocks {
			if _, err := f.WriteAt(buf, int64(j)*block); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		fs[i] = f
	}
	type span struct {
		file       int
		start, end time.Time
	}
	var (
		mu    sync.Mutex
		lat   []time.Duration
		slow  []span
		next  atomic.Int64
		wg    sync.WaitGroup
		first error
	)
	b.ResetTimer()
	const stall = 5 * time.Millisecond
	for n, f := range fs {
		wg.Go(func() {
			var mine []time.Duration
			var stalls []span
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					break
				}
				start := time.Now()
				_, err := f.WriteAt(buf, (i%blocks)*block)
				if err == nil {
					err = unix.Fdatasync(int(f.Fd()))
				}
				if err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
					return
				}
				end := time.Now()
				mine = append(mine, end.Sub(start))
				if end.Sub(start) > stall {
					stalls = append(stalls, span{n, start, end})
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			slow = append(slow, stalls...)
			mu.Unlock()
		})
	}
	wg.Wait()
	b.StopTimer()
	if first != nil {
		b.Fatal(first)
	}
	slices.Sort(lat)
	at := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / 1e3 }
	b.ReportMetric(at(0.5), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
	b.ReportMetric(at(0.999), "p99.9-µs")
	b.ReportMetric(float64(lat[len(lat)-1])/1e3, "max-µs")
	if len(slow) > 0 {
		shared := 0
		for _, x := range slow {
			if slices.ContainsFunc(slow, func(y span) bool {
				return y.file != x.file && y.start.Before(x.end) && x.start.Before(y.end)
			}) {
				shared++
			}
		}
		b.ReportMetric(float64(shared)/float64(len(slow)), "shared-stalls")
		b.ReportMetric(float64(len(slow)), "stalls")
	}
}
