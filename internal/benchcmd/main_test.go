package benchcmd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dynamo-kv/dynamo/storage"
	"github.com/dynamo-kv/dynamo/storage/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRun_JSON_ReportsEveryWorkload(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	err := run([]string{"-duration", "300ms", "-warmup", "0", "-keys", "100", "-clients", "2", "-json", "-dir", dir}, &out)
	require.NoError(t, err)

	var got []string
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var res result
		require.NoError(t, json.Unmarshal(sc.Bytes(), &res), "line %q", sc.Text())
		got = append(got, res.Workload)
		require.Positive(t, res.Ops, res.Workload)
		require.Positive(t, res.OpsPerSec, res.Workload)
		require.Zero(t, res.Errors, res.Workload)
		require.Equal(t, 2, res.Clients)
		require.Equal(t, 100, res.Keys)
		require.Equal(t, 1024, res.ValueSize)
		require.Positive(t, res.P50, res.Workload)
		require.LessOrEqual(t, res.P50, res.P99, res.Workload)
		require.LessOrEqual(t, res.P99, res.P999, res.Workload)
		require.InDelta(t, 0.3, res.Duration, 0.2, res.Workload)
	}
	require.NoError(t, sc.Err())
	require.Equal(t, []string{"put", "get", "mixed"}, got)

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "the data directory is removed")
}

func TestRun_Table(t *testing.T) {
	var out bytes.Buffer
	err := run([]string{"-duration", "100ms", "-warmup", "0", "-keys", "10", "-clients", "1", "-storage", "memory", "-workloads", "mixed", "-dir", t.TempDir()}, &out)
	require.NoError(t, err)
	require.Contains(t, out.String(), "workload")
	require.Contains(t, out.String(), "mixed")
}

func TestParseFlags_ReportsEveryProblem(t *testing.T) {
	var stderr bytes.Buffer
	_, err := parseFlags([]string{"-nodes", "2", "-n", "3", "-r", "0", "-workloads", "put,scan", "-read-ratio", "2"}, &stderr, nil)
	require.Error(t, err)
	for _, want := range []string{"-n (3) must be between 1 and -nodes (2)", "-r (0)", `unknown workload "scan"`, "-read-ratio (2)"} {
		require.ErrorContains(t, err, want)
	}
}

// TestRun_OverwriteAndFill runs the read-modify-write and fill workloads
// with zipf-picked keys: overwrite must succeed without errors (each Put
// carries the Context of its own Get, so siblings stay few even on the
// hottest key), and fill must report ten rows whose filled counts reach
// -keys and whose writes all landed (a Get of the last fill key finds it).
// TestRun_Chain runs chained overwrites (each with the context the last
// write of the key returned) on zipf-picked keys, so the hottest keys are
// written back to back through every node: every key must hold one version
// afterwards.
func TestRun_Chain(t *testing.T) {
	var out bytes.Buffer
	err := run([]string{"-duration", "300ms", "-warmup", "0", "-keys", "200", "-clients", "4", "-storage", "memory",
		"-workloads", "chain", "-dist", "zipf", "-json", "-dir", t.TempDir()}, &out)
	require.NoError(t, err)
	var res result
	require.NoError(t, json.Unmarshal(bytes.TrimSpace(out.Bytes()), &res))
	require.Equal(t, "chain", res.Workload)
	require.Positive(t, res.Ops)
	require.Zero(t, res.Errors)
	require.Equal(t, 1, res.MaxSiblings, "a chained overwrite supersedes the version before it")
}

func TestRun_OverwriteAndFill(t *testing.T) {
	var out bytes.Buffer
	err := run([]string{"-duration", "300ms", "-warmup", "0", "-keys", "200", "-clients", "4", "-storage", "memory",
		"-workloads", "overwrite,fill", "-dist", "zipf", "-json", "-dir", t.TempDir()}, &out)
	require.NoError(t, err)
	var rows []result
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var res result
		require.NoError(t, json.Unmarshal(sc.Bytes(), &res), "line %q", sc.Text())
		rows = append(rows, res)
	}
	require.NoError(t, sc.Err())
	require.Len(t, rows, 1+fillSlices)

	ow := rows[0]
	require.Equal(t, "overwrite", ow.Workload)
	require.Equal(t, "zipf(0.99)", ow.Dist)
	require.Positive(t, ow.Ops)
	require.Zero(t, ow.Errors)
	require.LessOrEqual(t, ow.MaxSiblings, 4, "a read-modify-write leaves at most one sibling per concurrent writer")

	var total uint64
	for i, res := range rows[1:] {
		require.Equal(t, "fill", res.Workload)
		require.Equal(t, 200*(i+1)/fillSlices, res.Filled)
		require.Zero(t, res.Errors)
		total += res.Ops
	}
	require.EqualValues(t, 200, total, "every key written once")
}

func TestFillKey_Distinct(t *testing.T) {
	seen := map[string]bool{}
	for k := range int64(10_000) {
		key := string(fillKey(1, k))
		require.False(t, seen[key], "key %d repeats %q", k, key)
		seen[key] = true
	}
}

// TestRun_FillRestartVerify fills one bbolt node, restarts it and verifies
// its hashes: the start-up reads the hash tree kept by bbolt (no scan), and
// the tree equals the data.
func TestRun_FillRestartVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("a bbolt node's Close, restart and a verify of 2^17 partitions: seconds; skipped in -short")
	}
	var out bytes.Buffer
	err := run([]string{"-keys", "300", "-clients", "4", "-nodes", "1", "-n", "1", "-r", "1", "-w", "1",
		"-workloads", "fill", "-restart", "-verify", "-json", "-dir", t.TempDir()}, &out)
	require.NoError(t, err)
	lines := bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))
	require.Len(t, lines, 1+fillSlices)
	var last result
	require.NoError(t, json.Unmarshal(lines[fillSlices-1], &last))
	require.Positive(t, last.DiskBytes, "the bbolt node's files")
	var res restartResult
	require.NoError(t, json.Unmarshal(lines[fillSlices], &res))
	require.Equal(t, "restart", res.Workload)
	require.Zero(t, res.HashScans, "the hash tree is read from bbolt")
	require.True(t, res.Verified)

	_, err = parseFlags([]string{"-restart"}, &out, nil)
	require.ErrorContains(t, err, "-restart needs -nodes 1")
	_, err = parseFlags([]string{"-verify", "-nodes", "1", "-n", "1", "-r", "1", "-w", "1"}, &out, nil)
	require.ErrorContains(t, err, "-verify needs -restart")
}

// TestRun_ExtraStorage: a storage kind added by Main's caller (as the
// storage/pebble module adds "pebble") is what -storage names, opened once
// per node in the node's directory; unknown kinds are refused.
func TestRun_ExtraStorage(t *testing.T) {
	var dirs []string
	extra := map[string]Storage{"custom": {Open: func(dir string) (storage.Storage, error) {
		dirs = append(dirs, dir)
		return memory.New(), nil
	}}}
	var out bytes.Buffer
	err := runContext(context.Background(), []string{"-duration", "100ms", "-warmup", "0", "-keys", "10", "-clients", "2",
		"-storage", "custom", "-workloads", "put", "-dir", t.TempDir()}, &out, io.Discard, extra)
	require.NoError(t, err)
	require.Len(t, dirs, 3, "one storage per node")
	require.Contains(t, out.String(), "custom")

	_, err = parseFlags([]string{"-storage", "pebble"}, &out, extra)
	require.ErrorContains(t, err, `must be "bolt" (bbolt, fsync on) or "memory" or "custom"`)
}
