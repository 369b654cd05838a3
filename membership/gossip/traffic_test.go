//go:build measure

// Gossip traffic per node, measured on real memberlist over 127.0.0.1 (§4.8), up to the paper's 100 nodes.

package gossip_test

import (
	"context"
	"flag"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dynamo-kv/dynamo/membership/gossip"
)

var (
	gossipNodes   = flag.Int("gossip.nodes", 10, "TestGossip_TrafficPerNode: nodes (100 for the paper's scale)")
	gossipProfile = flag.String("gossip.profile", "local", "TestGossip_TrafficPerNode: timing profile (lan for a deployment's)")
	gossipWindow  = flag.Duration("gossip.window", 2*time.Second, "TestGossip_TrafficPerNode: measured window (60s covers two LAN push/pull rounds per node)")
)

// meteredTransport counts every byte a node puts on the wire: its packets,
// and both directions of the streams it dials (each stream byte is thus
// counted once, by the dialling side).
type meteredTransport struct {
	memberlist.NodeAwareTransport
	bytes *atomic.Int64
}

func (m meteredTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	m.bytes.Add(int64(len(b)))
	return m.NodeAwareTransport.WriteTo(b, addr)
}

func (m meteredTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	m.bytes.Add(int64(len(b)))
	return m.NodeAwareTransport.WriteToAddress(b, a)
}

func (m meteredTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := m.NodeAwareTransport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return meteredConn{Conn: c, bytes: m.bytes}, nil
}

func (m meteredTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c, err := m.NodeAwareTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return meteredConn{Conn: c, bytes: m.bytes}, nil
}

type meteredConn struct {
	net.Conn
	bytes *atomic.Int64
}

func (c meteredConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.bytes.Add(int64(n))
	return n, err
}

func (c meteredConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.bytes.Add(int64(n))
	return n, err
}

// TestGossip_TrafficPerNode starts -gossip.nodes nodes on 127.0.0.1, all
// joining through the first, waits until every node lists them all, and
// measures the bytes of gossip on the wire per node and second over
// -gossip.window of steady state; then how long one more node's join, and
// then its leave, take to reach every node. It is a measurement in real
// time, run by hand (a loaded machine slows gossip down), so it builds only
// with -tags measure. The paper's scale with a deployment's timing:
//
//	go test -tags measure ./membership/gossip -run TestGossip_TrafficPerNode -v -gossip.nodes 100 -gossip.profile lan -gossip.window 60s
func TestGossip_TrafficPerNode(t *testing.T) {
	n, profile := *gossipNodes, gossip.Profile(*gossipProfile)
	// Registered first, so it runs after every node's Close: memberlist's
	// last probes end up to a probe interval after it shuts down (a second
	// on the LAN profile), longer than TestMain's leak check waits.
	atStart := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for goleak.Find(atStart) != nil && time.Now().Before(deadline) {
			time.Sleep(tick)
		}
	})
	wait := waitFor + time.Duration(n)*time.Second/2
	var wire atomic.Int64
	startMetered := func(id string, seeds ...string) *gossip.Gossip {
		nt, err := gossip.NewNetTransport("127.0.0.1:0", nil)
		require.NoError(t, err)
		cfg := config(id, seeds...)
		cfg.Profile = profile
		cfg.Transport = meteredTransport{NodeAwareTransport: nt, bytes: &wire}
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		defer cancel()
		g, err := gossip.Join(ctx, cfg)
		if err != nil {
			_ = nt.Shutdown()
		}
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, g.Close()) })
		return g
	}
	// allSee waits until every node of nodes lists exactly ids, and returns
	// how long that took.
	allSee := func(nodes []*gossip.Gossip, ids []string) time.Duration {
		start := time.Now()
		deadline := start.Add(wait)
		for {
			ok := true
			for _, g := range nodes {
				var got []string
				for _, m := range g.Members() {
					got = append(got, m.ID)
				}
				ok = ok && slices.Equal(got, ids)
			}
			if ok {
				return time.Since(start)
			}
			require.True(t, time.Now().Before(deadline), "the %d nodes never agreed on the members", len(nodes))
			time.Sleep(tick)
		}
	}

	var ids []string
	var nodes []*gossip.Gossip
	for i := range n {
		id := fmt.Sprintf("g%03d", i)
		ids = append(ids, id)
		var seeds []string
		if i > 0 { // the last few joined, so that no node answers every join
			for _, g := range nodes[max(0, i-3):] {
				seeds = append(seeds, g.GossipAddr())
			}
		}
		nodes = append(nodes, startMetered(id, seeds...))
	}
	converged := allSee(nodes, ids)
	t.Logf("%d nodes joined; all listed all %v after the last join", n, converged.Round(time.Millisecond))

	// Steady state: probes, their acks, gossip and push/pull.
	before := wire.Load()
	timer := time.NewTimer(*gossipWindow)
	select {
	case <-timer.C:
	case <-t.Context().Done():
		t.Fatal("ended while measuring")
	}
	perNode := float64(wire.Load()-before) / float64(n) / gossipWindow.Seconds()
	require.Positive(t, perNode, "gossip moves bytes")
	t.Logf("%d nodes, profile %s: gossip %.0f B/s sent per node (as much received) over %v", n, profile, perNode, *gossipWindow)

	extra := startMetered(fmt.Sprintf("g%03d", n), nodes[n/2].GossipAddr(), nodes[n-1].GossipAddr())
	joined := allSee(append(slices.Clone(nodes), extra), append(slices.Clone(ids), fmt.Sprintf("g%03d", n)))
	leaveStart := time.Now()
	require.NoError(t, extra.Leave(wait))
	allSee(nodes, ids)
	left := time.Since(leaveStart)
	t.Logf("a join reached every node in %v, a leave in %v", joined.Round(time.Millisecond), left.Round(time.Millisecond))
}
