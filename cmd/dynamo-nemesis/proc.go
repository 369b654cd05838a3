// proc.go: the controller's handle on one node process: start (and restart
// on the same data directory and ports), SIGKILL, SIGSTOP, SIGCONT, SIGTERM.

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procState is what the controller did to a node process last.
type procState int

const (
	stateUp      procState = iota // running (maybe still joining)
	stateStopped                  // SIGSTOPped
	stateDown                     // SIGKILLed or exited
)

func (s procState) String() string {
	return [...]string{"up", "stopped", "down"}[s]
}

// startTimeout bounds waiting for a started process's "listening" line, and
// then for its "ready" line at start-up and after the final heal.
const startTimeout = 30 * time.Second

// proc is one node: its identity and data directory, stable for the run,
// and the process currently running it.
type proc struct {
	idx     int
	id      string
	dir     string // data directory
	logPath string // stderr of every run of the node, appended

	mu                sync.Mutex
	ctl, data, gossip string // addresses, from the "listening" line
	actor             string
	cmd               *exec.Cmd
	exited            chan struct{} // closed once the current process has been reaped
	listening, ready  chan struct{} // closed on the current process's lines
	state             procState
	restartAt, contAt time.Time // when to restart (down) or continue (stopped)
	synced            bool      // the current block list reached the process
	starts            int
	expectExit        bool     // the controller is killing or stopping the current process
	crashes           []string // exits nobody asked for: "pid N: status"
}

func (p *proc) addrs() (ctl, data, gossip string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ctl, p.data, p.gossip
}

func (p *proc) current() (*exec.Cmd, chan struct{}, chan struct{}, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.exited, p.listening, p.ready
}

// start runs a new process for the node with args (the node flags), and
// waits for its "listening" line. It reports an error if the process exits
// first or takes longer than startTimeout.
func (p *proc) start(exe string, args []string) error {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	fmt.Fprintf(logf, "=== start %d: %s\n", p.starts+1, strings.Join(args, " "))
	cmd := exec.Command(exe, append([]string{"node"}, args...)...)
	cmd.Env = append(os.Environ(), nodeEnv+"=1")
	cmd.SysProcAttr = nodeSysProcAttr()
	cmd.Stderr = logf
	listening, ready, exited := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var once1, once2 sync.Once
	cmd.Stdout = &lineWriter{onLine: func(line string) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			return
		}
		kv := map[string]string{}
		for _, f := range fields[1:] {
			k, v, _ := strings.Cut(f, "=")
			kv[k] = v
		}
		switch fields[0] {
		case "listening":
			p.mu.Lock()
			p.ctl, p.data, p.gossip = kv["ctl"], kv["data"], kv["gossip"]
			p.mu.Unlock()
			once1.Do(func() { close(listening) })
		case "ready":
			p.mu.Lock()
			p.actor = kv["actor"]
			p.mu.Unlock()
			once2.Do(func() { close(ready) })
		}
	}}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.id, err)
	}
	p.mu.Lock()
	p.cmd, p.exited, p.listening, p.ready = cmd, exited, listening, ready
	p.state, p.synced, p.expectExit, p.restartAt = stateUp, false, false, time.Time{}
	p.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		p.mu.Lock()
		if !p.expectExit {
			// The node died by itself: a crash (TESTING §1 promise 5).
			p.crashes = append(p.crashes, fmt.Sprintf("pid %d: %v", cmd.Process.Pid, cmd.ProcessState))
			p.state = stateDown
		}
		p.mu.Unlock()
		close(exited)
	}()
	p.mu.Lock()
	p.starts++
	p.mu.Unlock()

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-listening:
		return nil
	case <-exited:
		// Not a crash under load: the caller handles a failed start.
		p.mu.Lock()
		p.crashes = p.crashes[:max(0, len(p.crashes)-1)]
		p.mu.Unlock()
		return fmt.Errorf("%s exited before listening (%v); see %s", p.id, cmd.ProcessState, p.logPath)
	case <-timer.C:
		p.kill()
		return fmt.Errorf("%s not listening after %v; see %s", p.id, startTimeout, p.logPath)
	}
}

// waitReady waits for the current process's "ready" line.
func (p *proc) waitReady(timeout time.Duration) error {
	_, exited, _, ready := p.current()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-ready:
		return nil
	case <-exited:
		return fmt.Errorf("%s exited before ready; see %s", p.id, p.logPath)
	case <-timer.C:
		return fmt.Errorf("%s not ready after %v; see %s", p.id, timeout, p.logPath)
	}
}

// isReady reports whether the current process printed "ready".
func (p *proc) isReady() bool {
	_, _, _, ready := p.current()
	select {
	case <-ready:
		return true
	default:
		return false
	}
}

// signal sends sig to the current process, unless it has been reaped.
func (p *proc) signal(sig syscall.Signal) error {
	cmd, exited, _, _ := p.current()
	if cmd == nil {
		return errors.New("never started")
	}
	select {
	case <-exited:
		return os.ErrProcessDone
	default:
	}
	return cmd.Process.Signal(sig)
}

// kill sends SIGKILL to the current process (by its PID, through its
// os.Process) and waits for it to be reaped.
func (p *proc) kill() {
	cmd, exited, _, _ := p.current()
	if cmd == nil {
		return
	}
	p.mu.Lock()
	p.expectExit = true
	p.mu.Unlock()
	_ = cmd.Process.Kill()
	<-exited
	p.mu.Lock()
	p.state = stateDown
	p.mu.Unlock()
}

// unexpectedExits returns the exits of the node that nobody asked for.
func (p *proc) unexpectedExits() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.crashes)
}

// terminate stops the current process with SIGCONT and SIGTERM, and SIGKILL
// if it has not exited within timeout. It returns "" when the process exited
// by itself with status 0 (or was not running), else what happened.
func (p *proc) terminate(timeout time.Duration) string {
	cmd, exited, _, _ := p.current()
	if cmd == nil {
		return ""
	}
	select {
	case <-exited:
		return ""
	default:
	}
	p.mu.Lock()
	p.expectExit = true
	p.mu.Unlock()
	_ = p.signal(syscall.SIGCONT)
	_ = p.signal(syscall.SIGTERM)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-exited:
	case <-timer.C:
		p.kill()
		return fmt.Sprintf("still running %v after SIGTERM; killed", timeout)
	}
	p.mu.Lock()
	p.state = stateDown
	p.mu.Unlock()
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Sprintf("exit status %d after SIGTERM", code)
	}
	return ""
}

// logTail returns the last n bytes of the node's log.
func (p *proc) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	return string(b[max(0, len(b)-n):])
}

func newProc(idx int, root string) (*proc, error) {
	id := fmt.Sprintf("n%d", idx+1)
	dir := filepath.Join(root, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &proc{idx: idx, id: id, dir: dir, logPath: filepath.Join(root, id+".log"), state: stateDown}, nil
}

// lineWriter calls onLine for each complete line written to it.
type lineWriter struct {
	mu     sync.Mutex
	buf    []byte
	onLine func(string)
}

func (l *lineWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		l.onLine(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
}
