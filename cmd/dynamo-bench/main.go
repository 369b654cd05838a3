// Command dynamo-bench measures a dynamo cluster run inside one process:
// throughput, latency percentiles and CPU per operation of closed-loop
// clients, for put, get, mixed, overwrite and fill workloads.
//
// By default it starts three nodes, each with bbolt storage (fsync on) in a
// temporary directory and the TCP transport on 127.0.0.1, joined by a static
// member list (no gossip), with N=3, R=2, W=2:
//
//	go run ./cmd/dynamo-bench -clients 16 -value-size 1024 -keys 10000 -duration 10s
//
// Each of -clients goroutines issues requests back to back to one node
// (client i uses node i mod -nodes) for -warmup, whose samples are discarded,
// then for -duration, the measured window. Every workload reports ops/s,
// p50/p99/p99.9 latency, errors, and the process's CPU time (user+sys) per
// operation over the measured window (all nodes and clients share the
// process, so that is the whole cluster's cost of one request); -json prints
// one JSON object per line instead of a table. -storage memory takes the disk
// out of the picture, and -cpuprofile profiles the measured windows (a fill, the whole of it).
//
// # Workloads
//
// Put returns no causal context (PutReturning does: see chain), so a client that writes a key twice
// without reading it in between makes its second write concurrent with its
// first: the two become siblings, and a key overwritten in a loop grows until
// Put fails with ErrTooManySiblings (blind writes with the zero Context pile
// up the same way). The workloads are built around that:
//
//   - put: each Put writes a fresh key (a client id and sequence number) with
//     the zero Context, so every write mints exactly one version and no key
//     ever holds siblings. Its cost is one Put, nothing else.
//   - get: a Get of a key picked (see -dist) from -keys keys, all preloaded
//     (written to every replica) before the first workload that reads.
//   - mixed: with probability -read-ratio a Get as above, otherwise a Put of
//     a preloaded key with the Context of the latest Get of that key (by any
//     client; kept in a per-key table filled by the preload and updated
//     after every Get). A Get's context covers all siblings, so a key holds
//     at most one sibling per Put since its last Get: about
//     (1-ratio)/ratio on average, which stays small unless -read-ratio is
//     near zero. The largest sibling count a Get saw is reported.
//   - overwrite: a real client's read-modify-write of a preloaded key: a Get,
//     then a Put with the Context that Get returned. The pair counts as one
//     operation, so its ops/s compares directly with put's.
//   - chain: an overwrite of a preloaded key without a read: PutReturning
//     with the context the key's previous write returned (kept per key,
//     seeded by the preload), writes of one key taking turns as one
//     client's would. After the run every key is read back; max siblings
//     reports the most one held, 1 when every write superseded the last.
//   - fill: fresh keys in scrambled order until -keys keys are written (no
//     preload, no -duration), reported in ten rows, one per tenth of the
//     keys, so that the write rate as the data grows shows.
//
// A fill of one big node, N=R=W=1:
//
//	dynamo-bench -nodes 1 -n 1 -r 1 -w 1 -workloads fill -keys 10000000 -value-size 128
//
// The same command built in the storage/pebble module (go run ./cmd/dynamo-bench
// there) also takes -storage pebble: the LSM storage for nodes that outgrow
// bbolt.
//
// -dist picks the keys of get, mixed and overwrite: uniform (the default),
// or zipf, which draws key rank k (key 0 the hottest) with probability
// proportional to k^-s, s = -zipf-s (0.99 by default, as YCSB's hot-key
// workloads): with 10,000 keys the hottest takes about a tenth of the
// requests.
//
// Every Get of a preloaded key that finds no value counts as an error: with
// R+W > N and no failures the preload must be visible.
package main

import "github.com/dynamo-kv/dynamo/internal/benchcmd"

func main() { benchcmd.Main(nil) }
