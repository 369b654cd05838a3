// Benchmarks of calls on the in-memory network.
package memnet_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/dynamo-kv/dynamo/transport/memnet"
)

// BenchmarkCall makes 1 KiB echo calls from GOMAXPROCS goroutines.
func BenchmarkCall(b *testing.B) {
	n := memnet.New(memnet.Options{})
	server, err := n.Listen("server")
	if err != nil {
		b.Fatal(err)
	}
	defer server.Close()
	client, err := n.Listen("client")
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	if err := server.Serve(func(_ context.Context, req []byte) ([]byte, error) { return req, nil }); err != nil {
		b.Fatal(err)
	}
	req := bytes.Repeat([]byte("x"), 1024)
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := client.Call(context.Background(), "server", req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
