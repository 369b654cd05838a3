// Command dynamo-nemesis is the real-process nemesis of docs/TESTING.md
// §4: it runs a dynamo cluster as OS processes on 127.0.0.1, injects faults
// (partitions through fault-injecting transports, SIGKILL and restart on the
// same data directory, SIGSTOP and SIGCONT) while clients add unique
// integers to a few set keys, then heals, waits for the replicas to converge
// and checks that no acknowledged write was lost and no deleted one came
// back.
//
//	go run ./cmd/dynamo-nemesis -duration 30s -seed 1            # union mode
//	go run ./cmd/dynamo-nemesis -duration 30s -seed 1 -mode lww  # last write wins
//
// It prints one line, and with -json also a JSON object:
//
//	acked=N lost=N unacked_present=N converge_ms=N max_siblings=N resurrected=N seed=N
//
// The same binary runs each node: "dynamo-nemesis node -id ..." (or any
// arguments with DYNAMO_NEMESIS_NODE=1 in the environment). See README.md.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit: node mode when asked for, else the
// controller. It returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "node" {
		return runNodeMain(args[1:], stdout, stderr)
	}
	if os.Getenv(nodeEnv) == "1" {
		return runNodeMain(args, stdout, stderr)
	}
	return runControllerMain(args, stdout, stderr)
}

// usage is printed by -h.
func usage(w io.Writer) {
	fmt.Fprint(w, `usage: dynamo-nemesis [flags]              run a cluster of node processes under faults and check it
       dynamo-nemesis node -id ID -data DIR [flags]  run one node (started by the controller)

`)
}
