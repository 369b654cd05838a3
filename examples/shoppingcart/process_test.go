// process_test.go: TESTING §4 on real OS processes over loopback: a node is killed with SIGKILL and restarted on its data directory, and every acknowledged write must read back from every node (§4.6, §4.7).

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/admin"
)

// procTimeout bounds each wait of the process test; the whole test normally
// takes a few seconds.
const procTimeout = 20 * time.Second

// maxOutageWrites bounds the writes made while waiting for the failure
// detector.
const maxOutageWrites = 2000

// processTest returns the binary to start node processes from (this test
// binary, which TestMain turns into a node) and a workload with an HTTP
// client that closes its connections when the test ends.
func processTest(t *testing.T) (exe string, w *workload) {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	t.Cleanup(client.CloseIdleConnections)
	return exe, newWorkload(t, client)
}

// TestProcesses runs a 3-node cluster as 3 OS processes on 127.0.0.1,
// writes through every node's HTTP API, SIGKILLs one node, keeps writing
// through the other two (W=2 is still met), restarts the killed node on the
// same data directory, and then requires every acknowledged write to read
// back at R=3 from every node. It also requires that an item removed while
// the node was down does not come back from its stale replica, that the
// restarted node kept its actor (its incarnation lives in its data), and that
// every node exits 0 on SIGTERM.
func TestProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: starts OS processes")
	}
	exe, w := processTest(t)

	begin := time.Now()
	dirs := map[string]string{"node-a": t.TempDir(), "node-b": t.TempDir(), "node-c": t.TempDir()}
	a := startProc(t, exe, "node-a", dirs["node-a"], "")
	b := startProc(t, exe, "node-b", dirs["node-b"], a.gossip)
	c := startProc(t, exe, "node-c", dirs["node-c"], a.gossip)
	procs := []*proc{a, b, c}
	w.waitView(procs, map[string]bool{"node-a": true, "node-b": true, "node-c": true})
	actor := w.health(c).Actor
	w.requireAdmin(a, 3)
	t.Logf("3 processes up and seeing each other after %v", time.Since(begin).Round(time.Millisecond))

	// Healthy: every write is acknowledged. "gone" is removed later, while
	// node-c is down, so node-c keeps a stale cart that still holds it.
	require.True(t, w.addItem(a, "gone"), "add gone")
	for round := range 3 {
		for _, p := range procs {
			require.True(t, w.write(p), "healthy write %d through %s", round, p.id)
		}
	}
	healthy := len(w.kv)

	c.kill()
	killed := time.Now()
	t.Logf("killed node-c (pid %d) after %d acknowledged writes", c.cmd.Process.Pid, healthy)
	require.True(t, w.removeItem(a, "gone"), "remove gone while node-c is down")
	// Keep writing through node-a and node-b until both hold node-c
	// unreachable (needed before it rejoins on new ports), and at least six
	// times, so some writes precede the failure detector and some follow it.
	deadline := time.Now().Add(procTimeout)
	for i := 0; ; i++ {
		require.True(t, time.Now().Before(deadline) && i < maxOutageWrites, "node-a and node-b never reported node-c unreachable")
		w.write(procs[i%2])
		if i >= 5 && !w.sees(a, "node-c") && !w.sees(b, "node-c") {
			break
		}
	}
	outage := len(w.kv) - healthy
	t.Logf("node-a and node-b hold node-c unreachable %v after the kill", time.Since(killed).Round(time.Millisecond))
	require.GreaterOrEqual(t, outage, 6, "acknowledged writes while node-c was down")

	c = startProc(t, exe, "node-c", dirs["node-c"], a.gossip)
	procs[2] = c
	t.Logf("node-c restarted on its data directory, %v after the kill", time.Since(killed).Round(time.Millisecond))
	require.Equal(t, actor, w.health(c).Actor, "a node restarted on its data keeps its actor")
	for _, p := range procs {
		w.write(p)
	}

	start := time.Now()
	w.waitConverged(procs, 3)
	converge := time.Since(start)
	var repairs, hints int64
	for _, p := range procs {
		st := w.health(p).Stats
		repairs += st.ReadRepairs
		hints += st.Hints.Stored
	}
	t.Logf("writes=%d acked=%d (healthy %d, while node-c was down %d) lost=0 converge_ms=%d read_repairs=%d hints_stored=%d slowest_write_ms=%d",
		w.n, len(w.kv), healthy, outage, converge.Milliseconds(), repairs, hints, w.slowest.Milliseconds())

	stopping := time.Now()
	for _, p := range procs {
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	}
	for _, p := range procs {
		p.waitExit0()
	}
	t.Logf("3 processes exited 0 on SIGTERM in %v", time.Since(stopping).Round(time.Millisecond))
}

// TestProcesses_LeaveOnExit checks the two ways a node stops on SIGTERM:
// without -leave-on-exit it stays in the ring, unreachable, as after a crash
// (§4.8: failure is not departure); with it, it leaves the ring, and the two
// nodes left serve reads and writes, with node-c still a replica.
func TestProcesses_LeaveOnExit(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: starts OS processes")
	}
	exe, w := processTest(t)

	a := startProc(t, exe, "node-a", t.TempDir(), "")
	b := startProc(t, exe, "node-b", t.TempDir(), a.gossip)
	c := startProc(t, exe, "node-c", t.TempDir(), a.gossip)
	d := startProc(t, exe, "node-d", t.TempDir(), a.gossip, "-leave-on-exit")
	w.waitView([]*proc{a, b, c, d}, map[string]bool{"node-a": true, "node-b": true, "node-c": true, "node-d": true})
	for _, p := range []*proc{a, b, c, d} {
		require.True(t, w.write(p), "write through %s", p.id)
	}

	require.NoError(t, c.cmd.Process.Signal(syscall.SIGTERM))
	c.waitExit0()
	w.waitView([]*proc{a, b, d}, map[string]bool{"node-a": true, "node-b": true, "node-c": false, "node-d": true})

	require.NoError(t, d.cmd.Process.Signal(syscall.SIGTERM))
	d.waitExit0()
	w.waitView([]*proc{a, b}, map[string]bool{"node-a": true, "node-b": true, "node-c": false})

	for _, p := range []*proc{a, b} {
		require.True(t, w.write(p), "write through %s after the leave", p.id)
	}
	// node-c is still a replica, down: R=3 cannot be met, R=2 can.
	w.waitConverged([]*proc{a, b}, 2)
}

// proc is one node process and the addresses it printed when ready.
type proc struct {
	t      *testing.T
	id     string
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{} // closed once Wait returns
	state  *os.ProcessState

	http, gossip, data string
}

// testSecret is the cluster secret of the test processes (public: never
// reuse it).
var testSecret = []byte("shoppingcart test cluster secret, public\n")

// startProc starts the test binary as node id on dir, joining seed (none for
// the first node), with extra flags, and waits for its "ready" line. The
// process is killed by PID when the test ends.
func startProc(t *testing.T, exe, id, dir, seed string, extra ...string) *proc {
	t.Helper()
	secretFile := filepath.Join(t.TempDir(), "cluster.secret")
	require.NoError(t, os.WriteFile(secretFile, testSecret, 0o600))
	args := []string{"-id", id, "-data", dir, "-profile", "local", "-secret-file", secretFile,
		"-listen", "127.0.0.1:0", "-gossip", "127.0.0.1:0", "-http", "127.0.0.1:0"}
	if seed != "" {
		args = append(args, "-join", seed)
	}
	args = append(args, extra...)
	ready := make(chan string, 1)
	p := &proc{t: t, id: id, cmd: exec.Command(exe, args...), stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), nodeEnv+"=1")
	p.cmd.Stdout = &lineWriter{onLine: func(line string) {
		if strings.HasPrefix(line, "ready ") {
			select {
			case ready <- line:
			default:
			}
		}
	}}
	p.cmd.Stderr = p.stderr
	require.NoError(t, p.cmd.Start())
	go func() {
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("stderr of %s (pid %d):\n%s", id, p.cmd.Process.Pid, p.stderr.tail(4000))
		}
	})

	select {
	case line := <-ready:
		for _, f := range strings.Fields(line)[1:] {
			k, v, _ := strings.Cut(f, "=")
			host, _, err := net.SplitHostPort(v)
			require.NoError(t, err, "ready line %q", line)
			require.Equal(t, "127.0.0.1", host, "ready line %q", line)
			switch k {
			case "http":
				p.http = v
			case "gossip":
				p.gossip = v
			case "data":
				p.data = v
			}
		}
		require.NotEmpty(t, p.http, "ready line %q", line)
		require.NotEmpty(t, p.gossip, "ready line %q", line)
	case <-p.exited:
		t.Fatalf("%s exited before ready (%v):\n%s", id, p.state, p.stderr.tail(4000))
	case <-time.After(procTimeout):
		t.Fatalf("%s not ready after %v:\n%s", id, procTimeout, p.stderr.tail(4000))
	}
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// waitExit0 waits for the process to exit and requires exit code 0.
func (p *proc) waitExit0() {
	p.t.Helper()
	select {
	case <-p.exited:
		require.Equal(p.t, 0, p.state.ExitCode(), "%s exit after SIGTERM:\n%s", p.id, p.stderr.tail(4000))
	case <-time.After(procTimeout):
		p.t.Fatalf("%s still running %v after SIGTERM", p.id, procTimeout)
	}
}

// workload writes unique values and records which were acknowledged: each
// write puts one key and adds one item to a shared cart.
type workload struct {
	t       *testing.T
	client  *http.Client
	n       int
	slowest time.Duration     // the slowest write's latency
	kv      map[string]string // acknowledged key -> value
	items   []string          // acknowledged cart items, removals applied
	tried   map[string]bool   // every item an add was attempted for
	removed map[string]bool   // items whose removal was acknowledged
}

func newWorkload(t *testing.T, client *http.Client) *workload {
	return &workload{t: t, client: client, kv: map[string]string{}, tried: map[string]bool{}, removed: map[string]bool{}}
}

const sharedCart = "/cart/shared"

// write does one numbered write through p and reports whether both its
// halves were acknowledged; each acknowledged half is recorded.
func (w *workload) write(p *proc) bool {
	w.n++
	start := time.Now()
	defer func() { w.slowest = max(w.slowest, time.Since(start)) }()
	key, value := fmt.Sprintf("k%03d", w.n), fmt.Sprintf("v%03d-via-%s", w.n, p.id)
	status, _, err := w.do(p, http.MethodPut, "/kv/"+key, []byte(value))
	kvOK := err == nil && status == http.StatusNoContent
	if kvOK {
		w.kv[key] = value
	}
	return w.addItem(p, fmt.Sprintf("item%03d", w.n)) && kvOK
}

func (w *workload) addItem(p *proc, item string) bool {
	w.tried[item] = true
	status, _, err := w.do(p, http.MethodPost, sharedCart+"/items/"+item, nil)
	if err == nil && status == http.StatusOK {
		w.items = append(w.items, item)
		return true
	}
	return false
}

func (w *workload) removeItem(p *proc, item string) bool {
	status, _, err := w.do(p, http.MethodDelete, sharedCart+"/items/"+item, nil)
	if err == nil && status == http.StatusOK {
		w.items = slices.DeleteFunc(w.items, func(s string) bool { return s == item })
		w.removed[item] = true
		return true
	}
	return false
}

func (w *workload) do(p *proc, method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(context.Background(), method, "http://"+p.http+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (w *workload) getJSON(p *proc, path string, v any) bool {
	status, body, err := w.do(p, http.MethodGet, path, nil)
	return err == nil && status == http.StatusOK && json.Unmarshal(body, v) == nil
}

// requireAdmin checks that p serves the admin handler under /admin/ (its
// status names it with members nodes all reachable, and the dashboard draws
// an ownership bar per node) and Prometheus metrics at /metrics.
func (w *workload) requireAdmin(p *proc, members int) {
	w.t.Helper()
	var st admin.Status
	require.True(w.t, w.getJSON(p, "/admin/status", &st))
	require.Equal(w.t, p.id, st.Node)
	require.Equal(w.t, members, st.Members)
	require.Equal(w.t, members, st.Reachable)
	code, page, err := w.do(p, http.MethodGet, "/admin/", nil)
	require.NoError(w.t, err)
	require.Equal(w.t, http.StatusOK, code)
	require.Equal(w.t, members, strings.Count(string(page), "data-ownership-bar="))
	code, scrape, err := w.do(p, http.MethodGet, "/metrics", nil)
	require.NoError(w.t, err)
	require.Equal(w.t, http.StatusOK, code)
	require.Contains(w.t, string(scrape), fmt.Sprintf("dynamo_members{node=%q} %d\n", p.id, members))
}

func (w *workload) health(p *proc) healthReply {
	w.t.Helper()
	var h healthReply
	require.True(w.t, w.getJSON(p, "/healthz", &h), "GET /healthz on %s", p.id)
	return h
}

// sees reports whether p's failure detector holds id reachable.
func (w *workload) sees(p *proc, id string) bool {
	for _, m := range w.health(p).Members {
		if m.ID == id {
			return m.Reachable
		}
	}
	return false
}

// waitView polls until every process sees exactly the members in want, with
// the reachability given.
func (w *workload) waitView(procs []*proc, want map[string]bool) {
	w.t.Helper()
	w.poll("every node sees "+fmt.Sprint(want), func() string {
		for _, p := range procs {
			got := map[string]bool{}
			for _, m := range w.health(p).Members {
				got[m.ID] = m.Reachable
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Sprintf("%s sees %v", p.id, got)
			}
		}
		return ""
	})
}

// waitConverged polls until every acknowledged value reads back at R=r from
// every node, and every node's cart holds every acknowledged item and no
// removed one. An add that was not acknowledged may or may not be present.
func (w *workload) waitConverged(procs []*proc, r int) {
	w.t.Helper()
	keys := make([]string, 0, len(w.kv))
	for k := range w.kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	wantItems := slices.Sorted(slices.Values(w.items))
	done := map[string]bool{} // "node key" pairs already read back
	q := fmt.Sprintf("?r=%d", r)
	w.poll("every acknowledged write reads back from every node at R"+q[2:], func() string {
		for _, p := range procs {
			for _, k := range keys {
				if done[p.id+" "+k] {
					continue
				}
				var rep kvReply
				if !w.getJSON(p, "/kv/"+k+q, &rep) {
					return fmt.Sprintf("GET /kv/%s%s on %s failed", k, q, p.id)
				}
				if !slices.ContainsFunc(rep.Siblings, func(v []byte) bool { return string(v) == w.kv[k] }) {
					return fmt.Sprintf("%s: %s has %q, want %q among its siblings", p.id, k, rep.Siblings, w.kv[k])
				}
				done[p.id+" "+k] = true
			}
			var cart cartReply
			if !w.getJSON(p, sharedCart+q, &cart) {
				return fmt.Sprintf("GET %s%s on %s failed", sharedCart, q, p.id)
			}
			for _, item := range wantItems {
				if !slices.Contains(cart.Items, item) {
					return fmt.Sprintf("%s: cart %v lacks acknowledged %q", p.id, cart.Items, item)
				}
			}
			for _, item := range cart.Items {
				if w.removed[item] || !w.tried[item] {
					return fmt.Sprintf("%s: cart %v holds %q, which was removed or never added", p.id, cart.Items, item)
				}
			}
		}
		return ""
	})
}

// poll calls check until it returns "" or procTimeout passes, and then fails
// with check's last complaint.
func (w *workload) poll(what string, check func() string) {
	w.t.Helper()
	deadline := time.Now().Add(procTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		last := check()
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("waited %v for %s: %s", procTimeout, what, last)
		}
		<-tick.C
	}
}

// lineWriter calls onLine for each complete line written to it.
type lineWriter struct {
	mu     sync.Mutex
	buf    []byte
	onLine func(string)
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.onLine(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
}

// syncBuffer is a bytes.Buffer safe for the exec copier and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// tail returns the last n bytes written.
func (s *syncBuffer) tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buf.Bytes()
	return string(b[max(0, len(b)-n):])
}
