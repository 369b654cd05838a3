// Benchmarks of tcp calls over loopback.
package tcp_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/dynamo-kv/dynamo/auth"
	"github.com/dynamo-kv/dynamo/transport/tcp"
)

func benchmarkCall(b *testing.B, opts tcp.Options, parallel bool) {
	benchmarkCallSize(b, opts, parallel, 1024)
}

func benchmarkCallSize(b *testing.B, opts tcp.Options, parallel bool, size int) {
	server := listen(b, opts)
	if err := server.Serve(echo); err != nil {
		b.Fatal(err)
	}
	client := listen(b, opts)
	req := bytes.Repeat([]byte("x"), size)
	ctx := context.Background()
	if _, err := client.Call(ctx, server.Addr(), req); err != nil { // dial outside the timing
		b.Fatal(err)
	}
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	b.ResetTimer()
	if !parallel {
		for b.Loop() {
			if _, err := client.Call(ctx, server.Addr(), req); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := client.Call(ctx, server.Addr(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCall makes 1 KiB echo calls from GOMAXPROCS goroutines.
func BenchmarkCall(b *testing.B) { benchmarkCall(b, tcp.Options{}, true) }

// BenchmarkCall_Sequential makes one 1 KiB echo call at a time: latency.
func BenchmarkCall_Sequential(b *testing.B) { benchmarkCall(b, tcp.Options{}, false) }

// BenchmarkCall_Parallel64 keeps 64 calls per GOMAXPROCS in flight, where
// batched writes pay off.
func BenchmarkCall_Parallel64(b *testing.B) {
	b.SetParallelism(64)
	benchmarkCall(b, tcp.Options{}, true)
}

// BenchmarkCall_1MiB makes one 1 MiB echo call at a time: payloads read
// in growing pieces.
func BenchmarkCall_1MiB(b *testing.B) { benchmarkCallSize(b, tcp.Options{}, false, 1<<20) }

// BenchmarkCall_Secret is BenchmarkCall over mutual TLS 1.3 from a cluster
// secret (package auth).
func BenchmarkCall_Secret(b *testing.B) {
	c, err := auth.FromSecrets("bench", "node", auth.Secrets{bytes.Repeat([]byte{'s'}, 32)})
	if err != nil {
		b.Fatal(err)
	}
	benchmarkCall(b, tcp.Options{TLS: c.TLSConfig(), Identify: c.PeerNodeID}, true)
}
