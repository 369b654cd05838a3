// dos_test.go: denial-of-service attacks on a real 3-process cluster opened the secure way, from an outsider and from a member holding the secret: the victim stays up, bounded in memory, and keeps serving (SECURITY, issue 14).

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Bounds every attack is held to, on the victim, while it lasts.
const (
	dosRSSLimit   = 256 << 20 // the victim's resident memory
	dosMinSuccess = 0.95      // legit Put+Get pairs through the victim that succeed
	dosP99Factor  = 3         // legit p99 against the p99 just before the attack
	// dosP99Floor is the smallest p99 a phase is compared with: below it,
	// a p99 is scheduling noise on a shared 2-core machine.
	dosP99Floor = 20 * time.Millisecond
)

// dosFullEnv, set, runs every attack with 10 s phases instead of the short
// suite's 2 s phases and fewer attacks:
//
//	DYNAMO_DOS_FULL=1 go test ./examples/shoppingcart -run TestDoS -v -timeout 30m
const dosFullEnv = "DYNAMO_DOS_FULL"

// phase is what the legit load and the victim looked like over one period.
type phase struct {
	ops, ok    int
	p99        time.Duration
	rss        int64   // the largest VmRSS seen, bytes
	goroutines int     // the most goroutines seen
	cpu        float64 // the victim's CPU time over the phase's wall time
}

func (p phase) success() float64 {
	if p.ops == 0 {
		return 0
	}
	return float64(p.ok) / float64(p.ops)
}

func (p phase) String() string {
	return fmt.Sprintf("%5.1f%% of %4d  p99 %6.1fms  rss %5.1fMiB  goroutines %5d  cpu %4.0f%%",
		100*p.success(), p.ops, float64(p.p99.Microseconds())/1000, float64(p.rss)/(1<<20), p.goroutines, 100*p.cpu)
}

// TestDoS opens a 3-node cluster as processes with a cluster secret, then
// runs each attack, from a process of its own, against node-a's data and
// gossip ports while a legit client does Put+Get pairs through node-a's
// HTTP API. It logs a table: success, p99, RSS, goroutines and CPU of
// node-a before (the previous attack's after), during and after each
// attack.
//
// During each attack node-a must stay up and keep its RSS under
// dosRSSLimit, and after it serve at least dosMinSuccess of the pairs. The
// full suite (dosFullEnv) also holds each attack to the brief's service
// bounds: at least dosMinSuccess of the pairs during it, with a p99 within
// dosP99Factor of the p99 just before; those are timings, which a short
// run on a busy machine does not assert.
func TestDoS(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: starts OS processes and attacks them")
	}
	full := os.Getenv(dosFullEnv) != ""
	dur := 2 * time.Second
	if full {
		dur = 10 * time.Second
	}
	exe, w := processTest(t)
	node := nodeBinary(t, exe)
	a := startProc(t, node, "node-a", t.TempDir(), "")
	b := startProc(t, node, "node-b", t.TempDir(), a.gossip)
	c := startProc(t, node, "node-c", t.TempDir(), a.gossip)
	w.waitView([]*proc{a, b, c}, map[string]bool{"node-a": true, "node-b": true, "node-c": true})

	load := newLoad(t, a)
	last := load.measure(dur)
	t.Logf("%-44s %s", "baseline", last)
	require.GreaterOrEqual(t, last.success(), dosMinSuccess, "baseline: %s", last)
	list, err := attacks()
	require.NoError(t, err)
	for _, at := range list {
		if !full && !at.short {
			continue
		}
		t.Run(strings.ReplaceAll(at.name, " ", "_"), func(t *testing.T) {
			stop := startAttacker(t, exe, at.name, a)
			during := load.measure(dur)
			stop()
			after := load.measure(dur)
			t.Logf("%-44s before %s", at.name, last)
			t.Logf("%-44s during %s", "", during)
			t.Logf("%-44s after  %s", "", after)
			before := last
			last = after
			select {
			case <-a.exited:
				t.Fatalf("node-a exited during %q (%v):\n%s", at.name, a.state, a.stderr.tail(4000))
			default:
			}
			require.Less(t, during.rss, int64(dosRSSLimit), "RSS during the attack")
			require.GreaterOrEqual(t, after.success(), dosMinSuccess, "legit success after the attack")
			if full {
				// Reported, not fatal: every attack runs and logs its row.
				if during.success() < dosMinSuccess {
					t.Errorf("legit success during the attack: %.1f%%, want at least %.0f%%", 100*during.success(), 100*dosMinSuccess)
				}
				if bound := dosP99Factor * max(before.p99, dosP99Floor); during.p99 > bound {
					t.Errorf("legit p99 during the attack: %v, want at most %v (%d times %v)", during.p99, bound, dosP99Factor, max(before.p99, dosP99Floor))
				}
			}
		})
	}
}

// startAttacker starts the attacker process running the named attack on p,
// waits until it attacks, and returns a func that stops it and waits for
// it to exit.
func startAttacker(t *testing.T, exe, name string, p *proc) (stop func()) {
	t.Helper()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), dosAttackEnv+"="+name, dosVictimEnv+"="+p.data+","+p.gossip)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	line := make([]byte, len("attacking\n"))
	_, rerr := io.ReadFull(stdout, line)
	go func() { exited <- cmd.Wait() }()
	stop = func() {
		_ = stdin.Close()
		select {
		case err := <-exited:
			require.NoError(t, err, "attacker %q:\n%s", name, stderr.tail(2000))
		case <-time.After(procTimeout):
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("attacker %q did not stop", name)
		}
	}
	if rerr != nil || string(line) != "attacking\n" {
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("attacker %q did not start (%v):\n%s", name, rerr, stderr.tail(2000))
	}
	return stop
}

// load is the legit client: Put+Get pairs of fresh keys through one node's
// HTTP API, on kept-alive connections, while a sampler reads the node's
// RSS (from /proc) and goroutine count (from /healthz).
type load struct {
	t      *testing.T
	p      *proc
	client *http.Client
	n      atomic.Int64
}

func newLoad(t *testing.T, p *proc) *load {
	client := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	return &load{t: t, p: p, client: client}
}

// dosWorkers is how many legit clients run at once.
const dosWorkers = 2

// measure runs the legit load for d and returns what it saw.
func (l *load) measure(d time.Duration) phase {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cpu0, wall0 := cpuTime(l.p.cmd.Process.Pid), time.Now()
	var (
		mu   sync.Mutex
		res  phase
		lats []time.Duration
		wg   sync.WaitGroup
	)
	for range dosWorkers {
		wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				ok := l.pair()
				lat := time.Since(start)
				mu.Lock()
				res.ops++
				if ok {
					res.ok++
					lats = append(lats, lat)
				}
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			rss := vmRSS(l.p.cmd.Process.Pid)
			g := l.goroutines()
			mu.Lock()
			res.rss, res.goroutines = max(res.rss, rss), max(res.goroutines, g)
			mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	wg.Wait()
	res.cpu = (cpuTime(l.p.cmd.Process.Pid) - cpu0).Seconds() / time.Since(wall0).Seconds()
	if len(lats) > 0 {
		slices.Sort(lats)
		res.p99 = lats[(len(lats)*99)/100]
	}
	return res
}

// pair puts a fresh key and reads it back, and reports whether both
// succeeded and the read returned the value.
func (l *load) pair() bool {
	i := l.n.Add(1)
	key, value := fmt.Sprintf("/kv/dos-%06d", i), fmt.Sprintf("value %06d", i)
	status, _ := l.do(http.MethodPut, key, []byte(value))
	if status != http.StatusNoContent {
		return false
	}
	status, body := l.do(http.MethodGet, key, nil)
	return status == http.StatusOK && bytes.Contains(body, []byte(`"`+b64(value)+`"`))
}

func (l *load) do(method, path string, body []byte) (int, []byte) {
	req, err := http.NewRequest(method, "http://"+l.p.http+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil
	}
	return resp.StatusCode, b
}

// goroutines reads the victim's goroutine count from /healthz; 0 if that
// failed.
func (l *load) goroutines() int {
	status, body := l.do(http.MethodGet, "/healthz", nil)
	if status != http.StatusOK {
		return 0
	}
	const field = `"goroutines":`
	i := bytes.Index(body, []byte(field))
	if i < 0 {
		return 0
	}
	rest := body[i+len(field):]
	j := bytes.IndexAny(rest, ",}")
	n, _ := strconv.Atoi(string(bytes.TrimSpace(rest[:max(j, 0)])))
	return n
}

// vmRSS returns the resident set size of process pid in bytes, from
// /proc/PID/status; 0 where there is no /proc.
func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpuTime returns the user and system CPU time process pid has used, from
// /proc/PID/stat; 0 where there is no /proc.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// raiseNoFile lifts this process's open-file limit to its hard limit, for
// the attacks that hold many connections.
func raiseNoFile() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

// nodeBinary returns the binary the attacked nodes run: exe, this test
// binary, unless it was built with the race detector, whose shadow memory
// would make a node's resident memory say nothing about the node's own
// bounds; then the example is built without it, as users run it.
func nodeBinary(t *testing.T, exe string) string {
	t.Helper()
	if !raceBuild {
		return exe
	}
	out := filepath.Join(t.TempDir(), "shoppingcart")
	cmd := exec.Command("go", "build", "-o", out, ".")
	msg, err := cmd.CombinedOutput()
	require.NoError(t, err, "building the example without the race detector: %s", msg)
	return out
}
