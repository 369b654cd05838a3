// admin_test.go: the JSON endpoints on a real cluster (TCP on 127.0.0.1,
// bbolt, memberlist): ring ownership, members, hints held for a crashed
// node (§4.6), and hot keys kept out unless asked for.
package admin_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/admin"
	"github.com/dynamo-kv/dynamo/internal/clustertest"
)

// getJSON fetches path from h and decodes it into a T.
func getJSON[T any](t *testing.T, h http.Handler, path string) T {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	require.Equal(t, http.StatusOK, rec.Code, "%s: %s", path, rec.Body)
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var v T
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &v), "%s", rec.Body)
	return v
}

func TestHandler_StatusRingMembers(t *testing.T) {
	c := clustertest.Start(t, 3)
	h := admin.Handler(c.Nodes[1].Store)
	for i := range 4 {
		put(t.Context(), t, c.Nodes[1].Store, fmt.Appendf(nil, "k%d", i))
	}
	for i := range 7 {
		_, _, err := c.Nodes[1].Get(t.Context(), fmt.Appendf(nil, "k%d", i))
		require.NoError(t, err)
	}

	st := getJSON[admin.Status](t, h, "/status")
	require.True(t, st.Healthy)
	require.Empty(t, st.Fatal)
	counts := map[string]uint64{}
	for _, l := range st.Latency {
		counts[l.Op+"/"+l.Outcome] = l.Count
		if l.Count > 0 {
			require.Positive(t, l.MeanSeconds, l.Op)
			require.LessOrEqual(t, l.P50Seconds, l.P95Seconds, l.Op)
			require.LessOrEqual(t, l.P95Seconds, l.P99Seconds, l.Op)
		}
	}
	require.Equal(t, uint64(4), counts["put/ok"])
	require.Equal(t, uint64(7), counts["get/ok"])
	require.Equal(t, "n1", st.Node)
	require.Equal(t, c.Nodes[1].Actor(), st.Actor)
	require.Equal(t, 3, st.Members)
	require.Equal(t, 3, st.Reachable)
	require.Equal(t, 64, st.Partitions)
	require.Equal(t, dynamo.DefaultN, st.N)
	require.Len(t, st.Fingerprint, 16)

	ring := getJSON[dynamo.RingView](t, h, "/ring")
	require.Equal(t, st.Fingerprint, ring.Fingerprint)
	first := 0
	for i, n := range ring.Nodes {
		require.Equal(t, fmt.Sprintf("n%d", i), n.ID)
		require.Equal(t, 64, n.Replica, "3 nodes, N=3: every node holds every partition")
		first += n.First
	}
	require.Equal(t, 64, first, "each partition has one first primary")

	members := getJSON[[]admin.Member](t, h, "/members")
	require.Len(t, members, 3)
	for i, m := range members {
		require.Equal(t, c.Nodes[i].Addr(), m.Addr)
		require.Equal(t, i == 1, m.Self)
		require.True(t, m.Reachable && m.MembershipUp && !m.Suspected)
	}
}

func TestHandler_HintsForCrashedNode(t *testing.T) {
	c := clustertest.Start(t, 4)
	c.Stop(3)
	ctx := t.Context()
	// Write until a hint is held for n3: keys n3 replicates go to a
	// fallback once n3 does not answer.
	hs := make([]http.Handler, 3)
	for i := range hs {
		hs[i] = admin.Handler(c.Nodes[i].Store)
	}
	held := func() (total int) {
		for _, h := range hs {
			total += getJSON[admin.Hints](t, h, "/hints").Total
		}
		return total
	}
	written := 0
	clustertest.WaitUntil(t, func() bool {
		for range 10 {
			key := fmt.Appendf(nil, "k%d", written)
			written++
			put(ctx, t, c.Nodes[0].Store, key)
		}
		return held() > 0
	}, "a hint for the crashed node")

	for i, h := range hs {
		hints := getJSON[admin.Hints](t, h, "/hints")
		stats := c.Nodes[i].Stats().Hints
		require.Equal(t, stats.Bytes, hints.Bytes)
		require.Equal(t, stats.Stored, hints.Stored)
		if stats.Pending["n3"] == 0 {
			require.Empty(t, hints.Pending, "node %d", i)
			continue
		}
		require.Equal(t, []admin.OwnerHints{{Owner: "n3", Hints: stats.Pending["n3"]}}, hints.Pending, "node %d", i)
		require.Equal(t, stats.Pending["n3"], hints.Total)
		require.Equal(t, hints.Total, getJSON[admin.Status](t, h, "/status").HintsPending)
	}
}

func put(ctx context.Context, t *testing.T, st *dynamo.Store, key []byte) {
	t.Helper()
	require.NoError(t, st.Put(ctx, key, []byte("v"), dynamo.CausalContext{}))
}

func TestHandler_HotKeysOnlyWhenAsked(t *testing.T) {
	c := clustertest.Start(t, 3)
	st := c.Nodes[0].Store
	key := []byte("cart:alice@example.com")
	put(t.Context(), t, st, key)
	for range 5 {
		_, _, err := st.Get(t.Context(), key)
		require.NoError(t, err)
	}
	require.NotEmpty(t, st.Stats().HotKeys, "the node counted the hot key")

	body := func(h http.Handler) string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stats", nil))
		require.Equal(t, http.StatusOK, rec.Code)
		return rec.Body.String()
	}
	hidden := getJSON[dynamo.Metrics](t, admin.Handler(st), "/stats")
	require.Empty(t, hidden.Stats.HotKeys)
	enc := base64.StdEncoding.EncodeToString(key) // how JSON carries []byte
	require.NotContains(t, body(admin.Handler(st)), enc)
	require.Contains(t, body(admin.Handler(st, admin.WithHotKeys())), enc)

	shown := getJSON[dynamo.Metrics](t, admin.Handler(st, admin.WithHotKeys()), "/stats")
	require.NotEmpty(t, shown.Stats.HotKeys)
	require.Equal(t, key, shown.Stats.HotKeys[0].Key)
}

func TestHandler_ReadOnlyAndHeaders(t *testing.T) {
	c := clustertest.Start(t, 1)
	h := admin.Handler(c.Nodes[0].Store)
	for _, path := range []string{"/", "/status", "/members", "/ring", "/hints", "/stats"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader("{}")))
		require.Equal(t, http.StatusMethodNotAllowed, rec.Code, path)

		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		require.Equal(t, http.StatusOK, rec.Code, path)
		require.Equal(t, "no-store", rec.Header().Get("Cache-Control"), path)
		require.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"), path)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/nope", nil))
	require.Equal(t, http.StatusNotFound, rec.Code)

	// Mounted under a prefix, as with net/http/pprof.
	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", h))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	res, err := srv.Client().Get(srv.URL + "/admin/status")
	require.NoError(t, err)
	b, err := io.ReadAll(res.Body)
	require.NoError(t, res.Body.Close())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Contains(t, string(b), `"node": "n0"`)
	srv.Client().CloseIdleConnections()
}
