# Reproduce the README's figures. `make bench` takes about four minutes.

.PHONY: test bench bench-go bench-hot scale

test:
	go test -race ./...
	cd storage/pebble && go test -race ./...

# dynamo-bench: 3 nodes over TCP on loopback, bbolt with fsync, N=3 R=2 W=2, 1 KiB
# values, 10k keys; three runs of put, get and mixed at 16 clients, then at 1 client.
# Quote the median of the three.
bench:
	go build -o bin/dynamo-bench ./cmd/dynamo-bench
	for i in 1 2 3; do ./bin/dynamo-bench -clients 16; done
	for i in 1 2 3; do ./bin/dynamo-bench -clients 1 -duration 5s; done

# Library micro-benchmarks: storage (log, group commit, reads) and the
# in-process cluster.
bench-go:
	go test -run XXX -bench . -benchmem -count 3 ./storage/bolt/
	go test -run XXX -bench 'Store_|Sync|Ring' -benchmem -count 3 .

# Hot keys: get and mixed with keys drawn at zipf s=0.99 against uniform keys, back to
# back, three rounds; then overwrite (Get, then Put with its context) against put.
# Quote the medians.
bench-hot:
	go build -o bin/dynamo-bench ./cmd/dynamo-bench
	for i in 1 2 3; do ./bin/dynamo-bench -workloads get,mixed; ./bin/dynamo-bench -workloads get,mixed -dist zipf; done
	for i in 1 2 3; do ./bin/dynamo-bench -workloads put,overwrite,chain; done

# 100 nodes in one process (in-memory network, fake time): Q = 2^17, 200k keys, a workload
# while 10 nodes join and 10 leave. About half an hour on 2 cores.
scale:
	go test -run TestScale_100Nodes -v -timeout 90m . -scale.full
