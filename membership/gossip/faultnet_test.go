// A test network that partitions memberlist transports on 127.0.0.1 (§4.8), with gossip.CutTransport.

package gossip_test

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/membership/gossip"
)

// faultNet is a set of cut links between gossip addresses. Every node of a
// test gets a faultTransport on the same faultNet, so a cut is symmetric.
type faultNet struct {
	mu  sync.RWMutex
	cut map[[2]string]bool // both orders of each cut pair
}

// isolate cuts every link between addr and each of others.
func (n *faultNet) isolate(addr string, others ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cut == nil {
		n.cut = make(map[[2]string]bool)
	}
	for _, o := range others {
		n.cut[[2]string{addr, o}] = true
		n.cut[[2]string{o, addr}] = true
	}
}

// heal restores every link.
func (n *faultNet) heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
}

// blocked reports whether the link from one address to another is cut.
func (n *faultNet) blocked(from, to string) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.cut[[2]string{from, to}]
}

// faultTransport is the gossip transport of the node at self: a
// gossip.CutTransport whose cuts are n's links from or to self.
type faultTransport struct {
	*gossip.CutTransport
	self string
}

// newFaultTransport listens on a free 127.0.0.1 port and starts filtering
// inbound packets. The caller passes it as Config.Transport, and shuts
// it down itself only if New or Join fails.
func newFaultTransport(t *testing.T, n *faultNet) *faultTransport {
	t.Helper()
	nt, err := gossip.NewNetTransport("127.0.0.1:0", nil)
	require.NoError(t, err)
	ip, port, err := nt.FinalAdvertiseAddr("", 0)
	if err != nil {
		_ = nt.Shutdown()
		require.NoError(t, err)
	}
	self := net.JoinHostPort(ip.String(), strconv.Itoa(port))
	cut := func(peer string, inbound bool) bool {
		if inbound {
			return n.blocked(peer, self)
		}
		return n.blocked(self, peer)
	}
	return &faultTransport{CutTransport: gossip.NewCutTransport(nt, cut), self: self}
}

// startOn joins node id, with the given seeds, on a faultTransport of n and
// closes it when the test ends. edit, if not nil, adjusts the config.
func startOn(t *testing.T, n *faultNet, id string, tr *faultTransport, edit func(*gossip.Config), seeds ...string) *gossip.Gossip {
	t.Helper()
	if tr == nil {
		tr = newFaultTransport(t, n)
	}
	cfg := config(id, seeds...)
	cfg.BindAddr = ""
	cfg.Transport = tr
	if edit != nil {
		edit(&cfg)
	}
	g := joinOrShutdown(t, cfg, tr)
	t.Cleanup(func() { require.NoError(t, g.Close()) })
	require.Equal(t, tr.self, g.GossipAddr())
	return g
}

// joinOrShutdown runs Join and fails the test on an error, shutting
// down the transport, which the failed Join did not take.
func joinOrShutdown(t *testing.T, cfg gossip.Config, tr *faultTransport) *gossip.Gossip {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	g, err := gossip.Join(ctx, cfg)
	if err != nil {
		_ = tr.Shutdown()
		require.NoError(t, err)
	}
	return g
}
