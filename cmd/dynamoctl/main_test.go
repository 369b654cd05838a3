// main_test.go: dynamoctl against the admin handler of a real cluster (TCP
// on 127.0.0.1, bbolt, memberlist): the tables' contents, -json, exit codes,
// and bounded, checked answers from a misbehaving endpoint.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/admin"
	"github.com/dynamo-kv/dynamo/internal/clustertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve mounts st's admin handler under /admin/ on 127.0.0.1 and returns
// its host:port.
func serve(t *testing.T, st *dynamo.Store) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", admin.Handler(st)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// ctl runs dynamoctl with args and returns its exit code, stdout and stderr.
func ctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// rows returns the table rows of out that start with one of ids (a node's
// row), split into fields.
func rows(out string, first int, ids ...string) map[string][]string {
	got := map[string][]string{}
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		for _, id := range ids {
			if len(f) > first && f[first] == id {
				got[id] = f
			}
		}
	}
	return got
}

func TestStatusRingStats(t *testing.T) {
	c := clustertest.Start(t, 3)
	n0 := c.Nodes[0]
	for i := range 5 {
		require.NoError(t, n0.Put(t.Context(), fmt.Appendf(nil, "k%d", i), []byte("v"), dynamo.CausalContext{}))
	}
	addr := serve(t, n0.Store)
	ring := n0.Ring()

	code, out, errOut := ctl(t, "-addr", addr, "status")
	require.Equal(t, exitOK, code, errOut)
	require.Contains(t, out, "n0 (actor "+n0.Actor()+")")
	require.Contains(t, out, "Health:      healthy")
	require.Contains(t, out, "64 partitions, N=3, fingerprint "+ring.Fingerprint)
	require.Contains(t, out, "Members:     3, 3 reachable")
	got := rows(out, 1, "n0", "n1", "n2")
	require.Len(t, got, 3, out)
	for _, n := range ring.Nodes {
		r := got[n.ID]
		require.Equal(t, "UP", r[0], out)
		wantFirst := fmt.Sprint(n.First)
		if n.Self {
			require.Equal(t, "*", r[2])
			r = append(r[:2], r[3:]...)
		}
		// STATE NODE ADDRESS ZONE FIRST FIRST% REPLICA REPLICA%
		require.Equal(t, []string{"UP", n.ID, n.Addr, "-", wantFirst, pctOf(n.First), "64", "100.0%"}, r, out)
	}
	put := rows(out, 0, "put")["put"]
	require.Equal(t, []string{"put", "ok", "5"}, put[:3], out)

	code, out, _ = ctl(t, "-addr", addr, "ring")
	require.Equal(t, exitOK, code)
	got = rows(out, 0, "n1", "n2")
	require.Len(t, got, 2, out)

	code, out, errOut = ctl(t, "-addr", "http://"+addr+"/", "-prefix", "admin/", "stats")
	require.Equal(t, exitOK, code, errOut)
	require.Equal(t, []string{"put", "ok", "5"}, rows(out, 0, "put")["put"][:3], out)
	require.Equal(t, []string{"stats.hints.stored", "0"}, rows(out, 0, "stats.hints.stored")["stats.hints.stored"], out)
	require.Equal(t, []string{"health.members", "3"}, rows(out, 0, "health.members")["health.members"], out)

	code, out, _ = ctl(t, "-addr", addr, "-json", "ring")
	require.Equal(t, exitOK, code)
	var v dynamo.RingView
	require.NoError(t, json.Unmarshal([]byte(out), &v))
	require.Equal(t, ring, v)
}

func pctOf(n int) string { return fmt.Sprintf("%.1f%%", 100*float64(n)/64) }

func TestMembersAndHints_CrashedNode(t *testing.T) {
	c := clustertest.Start(t, 4)
	c.Stop(3)
	// Write until some node holds a hint for n3 and holds it unreachable.
	i := 0
	holder := -1
	clustertest.WaitUntil(t, func() bool {
		require.NoError(t, c.Nodes[0].Put(t.Context(), fmt.Appendf(nil, "k%d", i), []byte("v"), dynamo.CausalContext{}))
		i++
		for j := range 3 {
			if c.Nodes[j].Stats().Hints.Pending["n3"] > 0 && !c.Nodes[j].Reachable("n3") {
				holder = j
				return true
			}
		}
		return false
	}, "a hint held for n3")
	st := c.Nodes[holder].Store
	addr := serve(t, st)

	code, out, _ := ctl(t, "-addr", addr, "members")
	require.Equal(t, exitProblem, code, "a member is unreachable: %s", out)
	got := rows(out, 0, "n0", "n1", "n2", "n3")
	require.Len(t, got, 4, out)
	// NODE [*] ADDRESS ZONE STATE MEMBERSHIP OWN-DETECTOR: n3 is down by
	// gossip or by the node's own detector, whichever noticed first.
	require.Contains(t, []string{"DOWN", "SUSPECT"}, got["n3"][3], out)
	require.Equal(t, "UP", got["n1"][3], out)

	code, out, _ = ctl(t, "-addr", addr, "-json", "members")
	require.Equal(t, exitProblem, code)
	var ms []admin.Member
	require.NoError(t, json.Unmarshal([]byte(out), &ms))
	require.False(t, ms[3].Reachable)

	// A write acknowledged at W may still store its hint for n3 in the
	// background: compare with a count that did not move around the call.
	clustertest.WaitUntil(t, func() bool {
		before := st.Stats().Hints.Pending["n3"]
		code, out, _ = ctl(t, "-addr", addr, "hints")
		if st.Stats().Hints.Pending["n3"] != before {
			return false
		}
		require.Equal(t, exitOK, code)
		require.Contains(t, out, fmt.Sprintf("%d hints held", before))
		require.Equal(t, []string{"n3", fmt.Sprint(before)}, rows(out, 0, "n3")["n3"], out)
		return true
	}, "the hints listed while none were being stored")
}

func TestErrors(t *testing.T) {
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())
	code, _, errOut := ctl(t, "-addr", closed, "status")
	require.Equal(t, exitFailed, code)
	require.Contains(t, errOut, "connection refused")

	mux := http.NewServeMux()
	mux.HandleFunc("/admin/status", func(w http.ResponseWriter, _ *http.Request) { // endless answer
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		for range 3 * maxBody >> 20 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/admin/members", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	mux.HandleFunc("/admin/ring", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `{"nodes": 7}`) })
	mux.HandleFunc("/admin/hints", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `not json`) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status"}, "exceeds"},
		{[]string{"-json", "status"}, "exceeds"},
		{[]string{"members"}, "500 Internal Server Error: boom"},
		{[]string{"ring"}, "not the JSON expected"},
		{[]string{"-json", "hints"}, "not JSON"},
	} {
		code, out, errOut := ctl(t, append([]string{"-addr", addr}, tc.args...)...)
		require.Equal(t, exitFailed, code, tc.args)
		require.Empty(t, out, tc.args)
		require.Contains(t, errOut, tc.want, tc.args)
	}

	for _, args := range [][]string{{}, {"nope"}, {"status", "ring"}, {"-timeout", "0s", "status"}, {"-addr", "", "status"}, {"-bogus"}} {
		code, _, _ := ctl(t, args...)
		require.Equal(t, exitUsage, code, args)
	}
	code, _, _ = ctl(t, "-h")
	require.Equal(t, exitOK, code)
}

func TestClean(t *testing.T) {
	require.Equal(t, "n0", clean("n0"))
	require.Equal(t, "-", clean(""))
	require.Equal(t, `"evil\x1b[2J\tid"`, clean("evil\x1b[2J\tid"))
}

func TestBaseURL(t *testing.T) {
	for _, tc := range []struct{ addr, prefix, want string }{
		{"127.0.0.1:8080", "/admin", "http://127.0.0.1:8080/admin/"},
		{"https://h:1/", "admin/", "https://h:1/admin/"},
		{"h:1", "", "http://h:1/"},
		{"h:1", "/a/b/", "http://h:1/a/b/"},
	} {
		got, err := baseURL(tc.addr, tc.prefix)
		require.NoError(t, err)
		require.Equal(t, tc.want, got)
	}
}
