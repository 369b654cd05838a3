// prom_test.go: a 3-node cluster (real TCP, bbolt, memberlist on
// 127.0.0.1) runs a known workload, and /metrics, scraped over HTTP and
// parsed, shows exactly what happened.
package prom_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/membership/gossip"
	"github.com/dynamo-kv/dynamo/metrics/prom"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor bounds every wait; TLS handshakes under -race on a loaded machine
// can take seconds.
const waitFor = 20 * time.Second

var secret = bytes.Repeat([]byte{'s'}, 32)

// openCluster opens size nodes on 127.0.0.1, each with bbolt in its own
// directory, and waits until every ring holds them all.
func openCluster(t *testing.T, size int) []*dynamo.Node {
	t.Helper()
	var nodes []*dynamo.Node
	var seeds []string
	for i := range size {
		base := dynamo.DefaultConfig()
		base.NodeID = fmt.Sprintf("n%d", i)
		base.Partitions = 64
		base.ReplicaTimeout, base.RequestTimeout = waitFor, 2*waitFor
		base.Secrets = [][]byte{secret}
		cfg := dynamo.NodeConfig{Config: base, Seeds: seeds, GossipProfile: gossip.ProfileLocal}
		ctx, cancel := context.WithTimeout(t.Context(), waitFor)
		n, err := dynamo.Open(ctx, filepath.Join(t.TempDir(), base.NodeID), cfg)
		cancel()
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, n.Close()) })
		nodes = append(nodes, n)
		seeds = []string{nodes[0].GossipAddr()}
	}
	eventually(t, func() bool {
		for _, n := range nodes {
			if len(n.Members()) < size {
				return false
			}
		}
		return true
	}, "every ring to hold the nodes")
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	for _, n := range nodes {
		require.NoError(t, n.WaitReady(ctx))
	}
	return nodes
}

func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", waitFor, what)
		}
		<-tick.C
	}
}

// scrape fetches url and parses the text exposition.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// series returns the metrics of family name whose labels include want.
func series(fams map[string]*dto.MetricFamily, name string, want map[string]string) []*dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
	var out []*dto.Metric
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && have[k] == v
		}
		if match {
			out = append(out, m)
		}
	}
	return out
}

// value sums the counter or gauge values, or histogram counts, of family
// name whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var sum float64
	for _, m := range series(fams, name, want) {
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// bucket returns the cumulative count of le in the one histogram of name
// matching want.
func bucket(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string, le float64) uint64 {
	t.Helper()
	ms := series(fams, name, want)
	require.Len(t, ms, 1, "%s %v", name, want)
	for _, b := range ms[0].GetHistogram().GetBucket() {
		if b.GetUpperBound() == le {
			return b.GetCumulativeCount()
		}
	}
	t.Fatalf("%s %v has no bucket le=%v", name, want, le)
	return 0
}

func TestCollector_ScrapeMatchesWorkload(t *testing.T) {
	nodes := openCluster(t, 3)
	reg := prometheus.NewRegistry()
	for _, n := range nodes {
		reg.MustRegister(prom.New(n))
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	ctx := t.Context()

	// 50 puts of 100 bytes, spread over the nodes; 20 gets of them.
	const puts, gets, size = 50, 20, 100
	for i := range puts {
		require.NoError(t, nodes[i%3].Put(ctx, fmt.Appendf(nil, "key-%d", i), make([]byte, size), dynamo.CausalContext{}))
	}
	for i := range gets {
		sibs, _, err := nodes[i%3].Get(ctx, fmt.Appendf(nil, "key-%d", i))
		require.NoError(t, err)
		require.Len(t, sibs, 1)
	}
	// Two concurrent writes of one key, neither seeing the other, through
	// two coordinators: a read of it on n0 finds 2 siblings.
	var wg sync.WaitGroup
	for i, v := range []string{"left", "right"} {
		wg.Go(func() {
			require.NoError(t, nodes[i+1].Put(ctx, []byte("pair"), []byte(v), dynamo.CausalContext{}))
		})
	}
	wg.Wait()
	sibs, _, err := nodes[0].Get(ctx, []byte("pair"))
	require.NoError(t, err)
	require.Len(t, sibs, 2)
	// A missing key's read, a bad put, and a failed quorum (R above N).
	_, _, err = nodes[0].Get(ctx, []byte("absent"))
	require.NoError(t, err)
	require.ErrorIs(t, nodes[0].Put(ctx, []byte("k"), make([]byte, 2<<20), dynamo.CausalContext{}), dynamo.ErrValueTooLarge)

	fams := scrape(t, srv.URL)
	ok := func(op string) map[string]string { return map[string]string{"op": op, "outcome": dynamo.OutcomeOK} }
	require.Equal(t, float64(puts+2), value(fams, "dynamo_request_duration_seconds", ok("put")))
	require.Equal(t, float64(gets+2), value(fams, "dynamo_request_duration_seconds", ok("get")))
	require.Equal(t, float64(1), value(fams, "dynamo_request_duration_seconds", map[string]string{"op": "put", "outcome": dynamo.OutcomeBadInput}))
	require.Zero(t, value(fams, "dynamo_request_duration_seconds", ok("delete")))
	require.Zero(t, value(fams, "dynamo_request_duration_seconds", ok("forward"))) // every node is a replica of every key (N=3)
	require.Empty(t, series(fams, "dynamo_quorum_failures_total", nil))

	// Siblings per read: on n0, one read found 2, one found none, and its
	// share of the 20 gets found 1 each.
	n0 := map[string]string{"node": "n0"}
	require.Equal(t, uint64(1), bucket(t, fams, "dynamo_read_siblings", n0, 0))
	require.Equal(t, uint64(1+7), bucket(t, fams, "dynamo_read_siblings", n0, 1)) // gets i%3 == 0: 7 of 20
	require.Equal(t, uint64(1+7+1), bucket(t, fams, "dynamo_read_siblings", n0, 2))
	require.Equal(t, uint64(9), bucket(t, fams, "dynamo_read_siblings", n0, 128))
	require.Equal(t, float64(gets+2), value(fams, "dynamo_read_siblings", nil))

	// Sizes: every put's value, the bad one included, and every read.
	var written float64
	for _, m := range series(fams, "dynamo_object_size_bytes", map[string]string{"op": "put"}) {
		written += m.GetHistogram().GetSampleSum()
	}
	require.Equal(t, float64(puts*size+len("left")+len("right")+2<<20), written)
	require.Equal(t, float64(puts+3), value(fams, "dynamo_object_size_bytes", map[string]string{"op": "put"}))

	for _, n := range []string{"n0", "n1", "n2"} {
		node := map[string]string{"node": n}
		require.Equal(t, float64(3), value(fams, "dynamo_members", node), n)
		require.Equal(t, float64(3), value(fams, "dynamo_members_reachable", node), n)
		require.Equal(t, float64(1), value(fams, "dynamo_ready", node), n)
		require.Equal(t, float64(0), value(fams, "dynamo_storage_failed", node), n)
		require.Positive(t, value(fams, "dynamo_transport_bytes_total", map[string]string{"node": n, "direction": "out"}), n)
		require.Positive(t, value(fams, "dynamo_storage_commits_total", node), n)
		require.Positive(t, value(fams, "dynamo_storage_fsyncs_total", node), n)
	}
	// Each write reaches the other two replicas, the late ones too.
	eventually(t, func() bool {
		f := scrape(t, srv.URL)
		return value(f, "dynamo_served_requests_total", map[string]string{"kind": "replicate"}) >= 2*(puts+2)
	}, "every write to reach every replica")
}

func TestCollector_QuorumFailureAndAntiEntropy(t *testing.T) {
	nodes := openCluster(t, 3)
	reg := prometheus.NewRegistry()
	reg.MustRegister(prom.New(nodes[0]))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	require.NoError(t, nodes[1].Put(t.Context(), []byte("k"), []byte("v"), dynamo.CausalContext{}))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, _, err := nodes[0].Get(ctx, []byte("k"))
	require.ErrorIs(t, err, dynamo.ErrReadQuorum)
	res, err := nodes[0].AntiEntropy(t.Context())
	require.NoError(t, err)

	fams := scrape(t, srv.URL)
	// Canceled at once, or its replicas' calls failed first: either way
	// one quorum failure of a get.
	require.Equal(t, float64(1), value(fams, "dynamo_quorum_failures_total", map[string]string{"op": "get"}))
	require.Equal(t, float64(1), value(fams, "dynamo_request_duration_seconds", map[string]string{"op": "get", "outcome": dynamo.OutcomeQuorum}))
	require.Equal(t, float64(1), value(fams, "dynamo_antientropy_rounds_total", nil))
	require.Equal(t, float64(res.Partitions), value(fams, "dynamo_antientropy_partitions_compared_total", nil))
	require.Equal(t, float64(res.BytesSent), value(fams, "dynamo_antientropy_bytes_total", map[string]string{"direction": "out"}))
	require.Len(t, series(fams, "dynamo_antientropy_last_sync_success", nil), 2) // n1 and n2
	require.Equal(t, float64(2), value(fams, "dynamo_antientropy_last_sync_success", nil))
}
