# Reproduce the README's figures. `make bench` takes about four minutes.

.PHONY: test bench bench-go

test:
	go test -race ./...

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
