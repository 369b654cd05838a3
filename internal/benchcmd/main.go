// Package benchcmd is the dynamo-bench command (see cmd/dynamo-bench),
// kept importable so that a storage in a module of its own (storage/pebble)
// can build the same command with its storage added.
package benchcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/dynamo-kv/dynamo/storage"
)

// Storage is a kind of node storage that -storage can name beyond "bolt"
// and "memory", for storages in modules of their own.
type Storage struct {
	// Open opens a node's storage with its files in dir (which may not
	// exist yet).
	Open func(dir string) (storage.Storage, error)
	// SumScans, if set, reports how many times st scanned its data for
	// its sums (-restart shows it); st is one Open returned.
	SumScans func(st storage.Storage) uint64
}

// Main runs the dynamo-bench command on os.Args and exits on error. extra
// names further -storage kinds (nil: none).
func Main(extra map[string]Storage) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := runContext(ctx, os.Args[1:], os.Stdout, os.Stderr, extra)
	stop()
	switch {
	case errors.Is(err, errHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "dynamo-bench:", err)
		os.Exit(1)
	}
}

// run runs the benchmark described by args (without the program name),
// writing the report to stdout and progress notes to stderr.
func run(args []string, stdout io.Writer) error {
	return runContext(context.Background(), args, stdout, os.Stderr, nil)
}

// runContext is run with a context that stops the benchmark early (the
// cluster is still closed and the temporary directory removed).
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer, extra map[string]Storage) error {
	cfg, err := parseFlags(args, stderr, extra)
	if err != nil {
		return err
	}
	return benchmark(ctx, cfg, stdout, stderr)
}
