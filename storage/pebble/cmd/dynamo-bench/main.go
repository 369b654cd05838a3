// Command dynamo-bench is the library's benchmark (see
// github.com/dynamo-kv/dynamo/cmd/dynamo-bench) with one more kind of node
// storage: -storage pebble, this module's LSM storage. A fill of one big
// node, bbolt against Pebble:
//
//	go run ./cmd/dynamo-bench -nodes 1 -n 1 -r 1 -w 1 -workloads fill -keys 10000000 -value-size 128 -clients 64 -storage bolt
//	go run ./cmd/dynamo-bench -nodes 1 -n 1 -r 1 -w 1 -workloads fill -keys 10000000 -value-size 128 -clients 64 -storage pebble
package main

import (
	"github.com/dynamo-kv/dynamo/internal/benchcmd"
	"github.com/dynamo-kv/dynamo/storage"
	"github.com/dynamo-kv/dynamo/storage/pebble"
)

func main() {
	benchcmd.Main(map[string]benchcmd.Storage{"pebble": {
		Open: func(dir string) (storage.Storage, error) {
			return pebble.Open(dir, nil)
		},
		SumScans: func(st storage.Storage) uint64 {
			return st.(*pebble.Store).Stats().SumScans
		},
	}})
}
