// logs_test.go: a steady-state cluster logs nothing at Info or above over
// several anti-entropy rounds (that repair keys), and no log line carries a
// key's bytes.
package dynamo

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// capture is a slog.Handler that keeps every record, with the attributes
// of the loggers it was derived from.
type capture struct {
	mu    *sync.Mutex
	recs  *[]slog.Record
	attrs []slog.Attr
}

func newCapture() capture { return capture{mu: new(sync.Mutex), recs: new([]slog.Record)} }

func (c capture) Enabled(context.Context, slog.Level) bool { return true }

func (c capture) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(c.attrs...)
	c.mu.Lock()
	defer c.mu.Unlock()
	*c.recs = append(*c.recs, r)
	return nil
}

func (c capture) WithAttrs(as []slog.Attr) slog.Handler {
	c.attrs = append(slices.Clone(c.attrs), as...)
	return c
}

func (c capture) WithGroup(string) slog.Handler { return c }

func (c capture) records() []slog.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(*c.recs)
}

func TestLogs_SteadyStateQuietAtInfo(t *testing.T) {
	logs := newCapture()
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.Logger = slog.New(logs)
		cfg.AntiEntropy.Interval = 10 * time.Millisecond
		cfg.ReplicaTimeout = 2 * time.Second // a loaded machine
	})
	// A version only n0 holds (minted locally, never replicated), which
	// anti-entropy spreads, and writes that every replica takes.
	s0, key := c.stores[0], []byte("missed")
	_, _, err := s0.rep.mint(partitionOf(key, s0.cfg.Partitions), key, []byte("v"), false, CausalContext{}.vv, time.Now().UnixNano())
	require.NoError(t, err)
	for i := range 20 {
		put(t, c.stores[i%3], string(rune('a'+i)), "v", Context{})
	}
	eventually(t, func() bool { return len(c.local(2, "missed")) == 1 }, "anti-entropy to bring n2 the version")
	rounds := make([]uint64, 3)
	for i, s := range c.stores {
		rounds[i] = s.Metrics().AntiEntropy.Rounds
	}
	eventually(t, func() bool {
		for i, s := range c.stores {
			if s.Metrics().AntiEntropy.Rounds < rounds[i]+3 {
				return false
			}
		}
		return true
	}, "three more anti-entropy rounds on every node")
	var repaired bool
	for _, s := range c.stores {
		repaired = repaired || s.Metrics().AntiEntropy.Totals.DiffKeys > 0
	}
	require.True(t, repaired, "anti-entropy repaired nothing: the test proves nothing")

	for _, r := range logs.records() {
		r.Attrs(func(a slog.Attr) bool {
			require.NotEqual(t, "key", a.Key, "a log line carries a key's bytes: %s", r.Message)
			return true
		})
		if r.Level >= slog.LevelInfo && r.Message != "store started" {
			t.Errorf("steady state logged at %v: %s", r.Level, r.Message)
		}
	}
}
