// main_test.go: docs/TESTING.md §4 in CI: a short seeded nemesis run on
// real processes, and unit tests of the checker and the fault wrappers.

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/membership/gossip"
	"github.com/dynamo-kv/dynamo/transport"
	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The controller re-executes this test binary as its node processes.
	if os.Getenv(nodeEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// TestNemesis_Short runs the controller in-process for 9 s, seed 1, union
// mode, on 5 node processes of this test binary, and requires no lost and no
// resurrected element, convergence, and that faults were really injected.
func TestNemesis_Short(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: starts OS processes")
	}
	cfg := defaultConfig()
	cfg.Duration = 9 * time.Second
	cfg.Seed = 1
	cfg.Mode = "union"
	cfg.Interval = time.Second
	cfg.DeleteEvery = 2 * time.Second
	cfg.OpTimeout = 3 * time.Second
	// Room for TLS handshakes (the nodes run on a cluster secret) in
	// race-built processes on a loaded machine.
	cfg.RequestTimeout, cfg.ReplicaTimeout = 2*time.Second, time.Second
	cfg.Converge = 8 * time.Second
	cfg.Partitions = 1024 // start-up transfers and Merkle trees cost less than with 2^17, under -race too
	cfg.Dir = t.TempDir()
	logs := &syncBuffer{}
	c := newController(cfg, logs)
	t.Cleanup(c.killAll) // every node process, by its PID, however the test ends
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("controller log:\n%s", logs.String())
			for _, p := range c.procs {
				t.Logf("log of %s (tail):\n%s", p.id, p.logTail(3000))
			}
		}
	})

	rep, err := c.run(context.Background())
	require.NoError(t, err)
	line := rep.line()
	t.Log(line)
	t.Logf("faults %+v, deletes %d (%d acked), unacked %d %v, reappeared %d", rep.Faults, rep.Deletes, rep.DeletesAcked, rep.Unacked, rep.UnackedBy, rep.Reappeared)
	t.Logf("controller log:\n%s", logs.String())

	got := parseReport(t, line)
	require.Equal(t, int64(1), got["seed"])
	require.Zero(t, got["lost"], "acknowledged elements lost: %v", rep.LostSample)
	require.Zero(t, got["resurrected"], "deleted elements resurrected: %v", rep.ResurrectedSample)
	require.Positive(t, got["acked"])
	require.GreaterOrEqual(t, got["converge_ms"], int64(0), "did not converge: %s", rep.NotConverged)
	require.True(t, rep.OK, "%v", rep.Failures)

	f := c.Faults()
	require.GreaterOrEqual(t, f.Kills, int64(1), "no SIGKILL happened: %+v", f)
	require.GreaterOrEqual(t, f.Restarts, f.Kills, "every killed node restarts: %+v", f)
	require.GreaterOrEqual(t, f.Partitions, int64(1), "no partition happened: %+v", f)
	require.Positive(t, rep.DeletesAcked, "no delete was acknowledged")

	b, err := json.Marshal(rep)
	require.NoError(t, err)
	var back map[string]any
	require.NoError(t, json.Unmarshal(b, &back))
	require.EqualValues(t, got["acked"], back["acked"])
}

// parseReport parses the report line into its fields, requiring exactly
// the fields of TESTING §3 in order.
func parseReport(t *testing.T, line string) map[string]int64 {
	t.Helper()
	want := []string{"acked", "lost", "unacked_present", "converge_ms", "max_siblings", "resurrected", "seed"}
	fields := strings.Fields(line)
	require.Len(t, fields, len(want), "report line %q", line)
	out := map[string]int64{}
	for i, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		require.True(t, ok, "field %q", f)
		require.Equal(t, want[i], k, "report line %q", line)
		n, err := strconv.ParseInt(v, 10, 64)
		require.NoError(t, err, "field %q", f)
		out[k] = n
	}
	return out
}

func TestCheck(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	h := history{
		Adds: []addRec{
			{Key: "k", Elem: 1, Start: at(0), End: at(1), Acked: true, Writer: -1},
			{Key: "k", Elem: 2, Start: at(2), End: at(3), Acked: true, Writer: -2, Superseded: []int64{-1}},
			{Key: "k", Elem: 3, Start: at(20), End: at(21), Acked: true, Writer: -3},                        // lost
			{Key: "k", Elem: 4, Start: at(22), End: at(23)},                                                 // unacked, present
			{Key: "k", Elem: 5, Start: at(24), End: at(25)},                                                 // unacked, absent
			{Key: "j", Elem: 6, Start: at(0), End: at(1), Acked: true, Writer: -6},                          // before an unknown delete
			{Key: "j", Elem: 7, Start: at(40), End: at(41), Acked: true, Writer: -7, Superseded: []int64{}}, // present
		},
		Dels: []delRec{
			// Covered 1 and 2 (version -2): 2 comes back in version -2 itself (a
			// resurrection), 1 comes back in a concurrent version -9 (reappeared only).
			{Key: "k", Start: at(10), End: at(11), Outcome: delAcked, Elems: []int64{1, 2}, Writers: []int64{-2}},
			{Key: "j", Start: at(30), End: at(31), Outcome: delUnknown},
		},
	}
	final := map[string][]siblingView{
		"k": {{Writer: -2, Elems: []int64{2}}, {Writer: -9, Elems: []int64{1, 4}}, {Writer: -1, Elems: []int64{1}}},
		"j": {{Writer: -7, Elems: []int64{7}}},
	}
	rep := check(h, final, "union")
	require.Equal(t, 5, rep.Acked)
	require.Equal(t, 1, rep.Lost, "%v", rep.LostSample)
	require.Equal(t, 1, rep.UnackedPresent)
	require.Equal(t, 1, rep.Resurrected, "%v", rep.ResurrectedSample)
	require.Equal(t, 2, rep.Reappeared)
	require.Equal(t, 1, rep.SupersededBack) // version -1 was superseded by the add of 2
	require.Equal(t, 1, rep.DeletedElems)   // 6, added before a delete of unknown outcome
	rep.Converged = true
	rep.finish("")
	require.False(t, rep.OK)
	require.Len(t, rep.Failures, 2)

	lww := check(h, final, "lww")
	lww.Converged = true
	lww.finish("")
	require.Len(t, lww.Failures, 0, "lww never fails on losses or resurrections")
}

// fakeGossip is an inner memberlist transport that records what it sends.
type fakeGossip struct {
	mu      sync.Mutex
	sent    []string
	dialled []string
	packets chan *memberlist.Packet
	streams chan net.Conn
}

func (f *fakeGossip) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return net.IPv4(127, 0, 0, 1), 7946, nil
}

func (f *fakeGossip) WriteTo(_ []byte, addr string) (time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, addr)
	return time.Now(), nil
}

func (f *fakeGossip) PacketCh() <-chan *memberlist.Packet { return f.packets }

func (f *fakeGossip) DialTimeout(addr string, _ time.Duration) (net.Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dialled = append(f.dialled, addr)
	return nil, errors.New("fake: no streams")
}

func (f *fakeGossip) StreamCh() <-chan net.Conn { return f.streams }

func (f *fakeGossip) Shutdown() error { return nil }

func TestFaultGossip(t *testing.T) {
	inner := &fakeGossip{packets: make(chan *memberlist.Packet, 4), streams: make(chan net.Conn)}
	blocks := newBlockList([]string{"127.0.0.1:2"})
	g := newFaultGossip(inner, blocks)
	defer func() { require.NoError(t, g.Shutdown()) }()

	_, err := g.WriteTo([]byte("x"), "127.0.0.1:1")
	require.NoError(t, err)
	_, err = g.WriteToAddress([]byte("x"), memberlist.Address{Addr: "127.0.0.1:2", Name: "n2"})
	require.NoError(t, err, "a dropped packet looks sent, as over UDP")
	_, err = g.DialAddressTimeout(memberlist.Address{Addr: "127.0.0.1:2"}, time.Second)
	require.ErrorIs(t, err, gossip.ErrLinkCut)
	_, err = g.DialTimeout("127.0.0.1:1", time.Second)
	require.ErrorContains(t, err, "fake")

	from := func(port int) *memberlist.Packet {
		return &memberlist.Packet{Buf: []byte{byte(port)}, From: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}
	}
	inner.packets <- from(2) // dropped
	inner.packets <- from(1)
	p := <-g.PacketCh()
	require.Equal(t, []byte{1}, p.Buf)

	blocks.set(nil)
	inner.packets <- from(2)
	p = <-g.PacketCh()
	require.Equal(t, []byte{2}, p.Buf)
	inner.mu.Lock()
	require.Equal(t, []string{"127.0.0.1:1"}, inner.sent)
	require.Equal(t, []string{"127.0.0.1:1"}, inner.dialled)
	inner.mu.Unlock()
	require.Equal(t, int64(3), blocks.dropped.Load())
}

// callRecorder is an inner data Transport that answers every Call.
type callRecorder struct{ transport.Transport }

func (callRecorder) Call(context.Context, string, []byte) ([]byte, error) { return []byte("ok"), nil }

func TestFaultTransport(t *testing.T) {
	blocks := newBlockList([]string{"127.0.0.1:2"})
	tr := &faultTransport{Transport: callRecorder{}, blocks: blocks}
	_, err := tr.Call(context.Background(), "127.0.0.1:2", nil)
	require.ErrorIs(t, err, transport.ErrUnreachable)
	reply, err := tr.Call(context.Background(), "127.0.0.1:1", nil)
	require.NoError(t, err)
	require.Equal(t, "ok", string(reply))
	blocks.set(nil)
	_, err = tr.Call(context.Background(), "127.0.0.1:2", nil)
	require.NoError(t, err)
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
