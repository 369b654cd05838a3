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
	var (
		mu    sync.Mutex
		lat   []time.Duration
		next  atomic.Int64
		wg    sync.WaitGroup
		first error
	)
	b.ResetTimer()
	for _, f := range fs {
		wg.Go(func() {
			var mine []time.Duration
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
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			lat = append(lat, mine...)
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
}
