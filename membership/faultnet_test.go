// A test network that partitions memberlist transports on 127.0.0.1 (§4.8), after cmd/dynamo-nemesis/faults.go.

package membership_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/membership"
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

// faultTransport wraps memberlist's NetTransport for the node at self:
// packets to an address cut from self are dropped (WriteTo reports success,
// as UDP would), streams to it fail to dial, and packets from it are dropped
// before memberlist sees them. Inbound streams come from ephemeral ports, so
// they are cut by the dialling node's own faultTransport.
type faultTransport struct {
	inner memberlist.NodeAwareTransport
	net   *faultNet
	self  string

	packets chan *memberlist.Packet
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*faultTransport)(nil)

// newFaultTransport listens on a free 127.0.0.1 port and starts filtering
// inbound packets. The caller passes it as GossipConfig.Transport, and shuts
// it down itself only if NewGossip or JoinGossip fails.
func newFaultTransport(t *testing.T, n *faultNet) *faultTransport {
	t.Helper()
	nt, err := membership.NewNetTransport("127.0.0.1:0", nil)
	require.NoError(t, err)
	ip, port, err := nt.FinalAdvertiseAddr("", 0)
	if err != nil {
		_ = nt.Shutdown()
		require.NoError(t, err)
	}
	f := &faultTransport{
		inner:   nt,
		net:     n,
		self:    net.JoinHostPort(ip.String(), strconv.Itoa(port)),
		packets: make(chan *memberlist.Packet),
		done:    make(chan struct{}),
	}
	f.wg.Add(1)
	go f.filter()
	return f
}

func (f *faultTransport) filter() {
	defer f.wg.Done()
	in := f.inner.PacketCh()
	for {
		select {
		case p := <-in:
			if p == nil || (p.From != nil && f.net.blocked(p.From.String(), f.self)) {
				continue
			}
			select {
			case f.packets <- p:
			case <-f.done:
				return
			}
		case <-f.done:
			return
		}
	}
}

func (f *faultTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return f.inner.FinalAdvertiseAddr(ip, port)
}

func (f *faultTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if f.net.blocked(f.self, addr) {
		return time.Now(), nil
	}
	return f.inner.WriteTo(b, addr)
}

func (f *faultTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if f.net.blocked(f.self, a.Addr) {
		return time.Now(), nil
	}
	return f.inner.WriteToAddress(b, a)
}

func (f *faultTransport) PacketCh() <-chan *memberlist.Packet { return f.packets }

func (f *faultTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if f.net.blocked(f.self, addr) {
		return nil, fmt.Errorf("dial %s: cut from %s (test)", addr, f.self)
	}
	return f.inner.DialTimeout(addr, timeout)
}

func (f *faultTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if f.net.blocked(f.self, a.Addr) {
		return nil, fmt.Errorf("dial %s: cut from %s (test)", a.Addr, f.self)
	}
	return f.inner.DialAddressTimeout(a, timeout)
}

func (f *faultTransport) StreamCh() <-chan net.Conn { return f.inner.StreamCh() }

// Shutdown shuts the wrapped transport down and stops the filter; it may be
// called more than once.
func (f *faultTransport) Shutdown() error {
	err := f.inner.Shutdown()
	f.once.Do(func() { close(f.done) })
	f.wg.Wait()
	return err
}

// startOn joins node id, with the given seeds, on a faultTransport of n and
// closes it when the test ends. edit, if not nil, adjusts the config.
func startOn(t *testing.T, n *faultNet, id string, tr *faultTransport, edit func(*membership.GossipConfig), seeds ...string) *membership.Gossip {
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

// joinOrShutdown runs JoinGossip and fails the test on an error, shutting
// down the transport, which the failed JoinGossip did not take.
func joinOrShutdown(t *testing.T, cfg membership.GossipConfig, tr *faultTransport) *membership.Gossip {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	g, err := membership.JoinGossip(ctx, cfg)
	if err != nil {
		_ = tr.Shutdown()
		require.NoError(t, err)
	}
	return g
}
