// Crash test: acknowledged Updates survive SIGKILL of a real process, round after round on one file.

//go:build unix

package bolt_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage/bolt"
)

const (
	// crashChildEnv switches TestCrashChild on; it names the database file.
	crashChildEnv = "DYNAMO_BOLT_CRASH_CHILD"
	// crashRounds is how many times one file is written to and SIGKILLed.
	crashRounds = 5
	// crashAcksPerRound is how many acks a round waits for before the kill.
	crashAcksPerRound = 1500
	// crashRoundTimeout bounds the wait for those acks.
	crashRoundTimeout = 60 * time.Second
	// crashWriters is how many goroutines of the child write, each to its
	// own crashKeysPerWriter keys.
	crashWriters       = 8
	crashKeysPerWriter = 50
	// crashValueSize is the size of every value: the counter, ':', padding.
	crashValueSize = 1024
)

// crashOptions are the Options of both the child and the parent's checks.
func crashOptions() *bolt.Options {
	// small log so the run crosses checkpoints
	return &bolt.Options{LogSize: 64 << 10}
}

// crashKey is the key i of writer w.
func crashKey(w, i int) string { return fmt.Sprintf("w%d-k%d", w, i) }

// crashValue encodes counter n: decimal, ':', then padding up to
// crashValueSize bytes, every byte of it derived from n so that a torn or
// mixed-up value does not parse.
func crashValue(n uint64) []byte {
	v := strconv.AppendUint(make([]byte, 0, crashValueSize), n, 10)
	v = append(v, ':')
	return append(v, bytes.Repeat([]byte{crashPad(n)}, crashValueSize-len(v))...)
}

// crashPad is the padding byte of counter n.
func crashPad(n uint64) byte { return 'a' + byte(n%26) }

// crashCounter decodes a value written by crashValue; nil (absent) is 0.
func crashCounter(v []byte) (uint64, error) {
	if v == nil {
		return 0, nil
	}
	if len(v) != crashValueSize {
		return 0, fmt.Errorf("value of %d bytes, want %d: %.40q", len(v), crashValueSize, v)
	}
	digits, pad, ok := bytes.Cut(v, []byte{':'})
	if !ok {
		return 0, fmt.Errorf("value without ':': %.40q", v)
	}
	n, err := strconv.ParseUint(string(digits), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("value with a bad counter: %.40q: %w", v, err)
	}
	if i := bytes.IndexFunc(pad, func(r rune) bool { return r != rune(crashPad(n)) }); i >= 0 {
		return 0, fmt.Errorf("value %d has a bad padding byte at %d: %.40q", n, len(digits)+1+i, v[len(digits)+1+i:])
	}
	return n, nil
}

// TestCrash_AckedUpdatesSurviveSIGKILL checks Update's promise that it
// returns nil only once the change is durable. A child process (this test
// binary, running TestCrashChild) increments counters under many keys from
// 8 goroutines and prints "ack <key> <counter>" after every Update that
// returned nil; the parent SIGKILLs it mid-stream, opens the file itself and
// requires every key to hold at least its highest acknowledged counter (more
// is fine: an Update may land without its ack being printed). It does this
// 5 times on the same file, so each round also starts from a recovered one.
func TestCrash_AckedUpdatesSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: starts and SIGKILLs OS processes")
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "node.db")

	keys := make(map[string]bool, crashWriters*crashKeysPerWriter)
	for w := range crashWriters {
		for i := range crashKeysPerWriter {
			keys[crashKey(w, i)] = true
		}
	}
	acked := make(map[string]uint64) // highest acked counter of every key ever acked
	begin := time.Now()
	for round := 1; round <= crashRounds; round++ {
		lines := runCrashChild(t, exe, path, round)
		for _, line := range lines {
			f := strings.Fields(line)
			require.Len(t, f, 3, "round %d: bad line from the child: %q", round, line)
			require.Equal(t, "ack", f[0], "round %d: bad line from the child: %q", round, line)
			require.True(t, keys[f[1]], "round %d: ack of unknown key: %q", round, line)
			n, err := strconv.ParseUint(f[2], 10, 64)
			require.NoError(t, err, "round %d: bad line from the child: %q", round, line)
			// One goroutine owns each key and waits for each Update, and
			// every round resumes from what the last one stored, so a key's
			// acks only go up; a repeat means the child read a lost write.
			require.Greater(t, n, acked[f[1]], "round %d: key %s acked %d after %d: an acked write was lost",
				round, f[1], n, acked[f[1]])
			acked[f[1]] = n
		}

		s, err := bolt.Open(path, crashOptions())
		require.NoError(t, err, "round %d: open after SIGKILL", round)
		for k, want := range acked {
			v, err := s.Get([]byte(k))
			require.NoError(t, err, "round %d: get %s", round, k)
			got, err := crashCounter(v)
			require.NoError(t, err, "round %d: key %s (acked %d) holds garbage", round, k, want)
			require.GreaterOrEqual(t, got, want, "round %d: key %s: acked %d but stored %d: an acked write was lost",
				round, k, want, got)
		}
		stored := 0
		require.NoError(t, s.ForEach(nil, func(k, v []byte) error {
			stored++
			if !keys[string(k)] {
				return fmt.Errorf("unknown key %q", k)
			}
			if _, err := crashCounter(v); err != nil {
				return fmt.Errorf("key %s: %w", k, err)
			}
			return nil
		}), "round %d: scan after SIGKILL", round)
		require.NoError(t, s.Close(), "round %d", round)
		t.Logf("round %d: %d acks, %d keys acked so far, %d stored, %v elapsed",
			round, len(lines), len(acked), stored, time.Since(begin).Round(time.Millisecond))
	}
}

// runCrashChild runs TestCrashChild on path until it has printed
// crashAcksPerRound lines, SIGKILLs it and returns every line it printed,
// the ones still in the pipe at the kill included. The child is always
// gone when it returns.
func runCrashChild(t *testing.T, exe, path string, round int) []string {
	t.Helper()
	// -test.timeout stops a child whose parent died without killing it.
	cmd := exec.Command(exe, "-test.run=^TestCrashChild$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	var stderr bytes.Buffer // written by exec's copier, read only after Wait
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start(), "round %d: start child", round)

	out := make(chan string, 256)
	var scanErr error // written before out is closed
	go func() {
		defer close(out)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out <- sc.Text()
		}
		scanErr = sc.Err()
	}()

	var lines []string
	deadline := time.NewTimer(crashRoundTimeout)
	defer deadline.Stop()
	var closedEarly, timedOut bool
read:
	for len(lines) < crashAcksPerRound {
		select {
		case line, ok := <-out:
			if !ok {
				closedEarly = true
				break read
			}
			lines = append(lines, line)
		case <-deadline.C:
			timedOut = true
			break read
		}
	}
	killErr := cmd.Process.Kill() // SIGKILL
	for line := range out {       // to EOF: what was printed before the kill counts
		lines = append(lines, line)
	}
	waitErr := cmd.Wait()

	require.NoError(t, scanErr, "round %d: reading the child's stdout", round)
	require.False(t, timedOut, "round %d: only %d acks after %v; stderr:\n%s", round, len(lines), crashRoundTimeout, stderr.String())
	require.False(t, closedEarly, "round %d: child closed stdout after %d acks (%v); stderr:\n%s", round, len(lines), waitErr, stderr.String())
	if killErr != nil && !errors.Is(killErr, os.ErrProcessDone) {
		require.NoError(t, killErr, "round %d: kill child", round)
	}
	require.False(t, cmd.ProcessState.Exited(), "round %d: child exited on its own (%v) instead of being killed; stderr:\n%s",
		round, cmd.ProcessState, stderr.String())
	require.Empty(t, stderr.String(), "round %d: child wrote to stderr", round)
	return lines
}

// TestCrashChild is the child process of TestCrash_AckedUpdatesSurviveSIGKILL
// and does nothing unless crashChildEnv is set. Then it opens the Store named
// there and, from crashWriters goroutines, increments random counters of
// their own keys forever, printing "ack <key> <counter>" to stdout after each
// Update that returned nil, until it is killed. Any error goes to stderr and
// exits the process.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		return
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(3)
	}
	s, err := bolt.Open(path, crashOptions())
	if err != nil {
		fail(err)
	}

	var mu sync.Mutex // one whole line per write, never interleaved
	ack := func(key string, n uint64) {
		line := fmt.Appendf(nil, "ack %s %d\n", key, n)
		mu.Lock()
		defer mu.Unlock()
		if _, err := os.Stdout.Write(line); err != nil {
			fail(fmt.Errorf("print ack: %w", err))
		}
	}
	errc := make(chan error, crashWriters)
	for w := range crashWriters {
		go func() {
			for {
				key := crashKey(w, rand.IntN(crashKeysPerWriter))
				var n uint64
				err := s.Update([]byte(key), func(cur []byte) ([]byte, error) {
					c, err := crashCounter(cur)
					if err != nil {
						return nil, fmt.Errorf("key %s: %w", key, err)
					}
					n = c + 1
					return crashValue(n), nil
				})
				if err != nil {
					errc <- fmt.Errorf("update %s: %w", key, err)
					return
				}
				ack(key, n)
			}
		}()
	}
	fail(<-errc)
}
