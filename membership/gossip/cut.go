// CutTransport: a memberlist transport whose links can be cut, for fault tests of gossip (§4.8).

package gossip

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// ErrLinkCut is returned (wrapped) by a CutTransport's dials to a peer
// whose link is cut.
var ErrLinkCut = errors.New("dynamo: gossip: link cut")

// CutTransport wraps a memberlist transport so that a test, or a nemesis,
// can partition gossip: outbound packets to a cut peer are dropped (the
// write reports success, as UDP would), outbound streams to it fail to dial
// with ErrLinkCut, and inbound packets from it (Packet.From is the sender's
// gossip address, since memberlist sends from its listening socket) are
// dropped before memberlist sees them. Inbound streams come from ephemeral
// ports, so they are cut by the dialling peer's own CutTransport.
//
// Pass it as Config.Transport. It owns the wrapped transport:
// Shutdown shuts that down too.
type CutTransport struct {
	inner memberlist.NodeAwareTransport
	cut   func(peer string, inbound bool) bool

	packets chan *memberlist.Packet
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*CutTransport)(nil)

// NewCutTransport wraps inner and starts filtering its inbound packets.
// cut reports whether the link to peer (a gossip "host:port") is cut, for
// a packet or dial going out to it (inbound false) or a packet coming in
// from it (inbound true); it is called concurrently.
func NewCutTransport(inner memberlist.Transport, cut func(peer string, inbound bool) bool) *CutTransport {
	na, ok := inner.(memberlist.NodeAwareTransport)
	if !ok {
		na = nodeAwareShim{inner}
	}
	c := &CutTransport{inner: na, cut: cut, packets: make(chan *memberlist.Packet), done: make(chan struct{})}
	c.wg.Add(1)
	go c.filter()
	return c
}

// nodeAwareShim lifts a plain Transport to a NodeAwareTransport, as
// memberlist itself does for transports that are not node-aware.
type nodeAwareShim struct{ memberlist.Transport }

func (s nodeAwareShim) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return s.WriteTo(b, a.Addr)
}

func (s nodeAwareShim) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return s.DialTimeout(a.Addr, timeout)
}

func (c *CutTransport) filter() {
	defer c.wg.Done()
	in := c.inner.PacketCh()
	for {
		select {
		case p := <-in:
			if p == nil || (p.From != nil && c.cut(p.From.String(), true)) {
				continue
			}
			select {
			case c.packets <- p:
			case <-c.done:
				return
			}
		case <-c.done:
			return
		}
	}
}

// FinalAdvertiseAddr is the wrapped transport's.
func (c *CutTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return c.inner.FinalAdvertiseAddr(ip, port)
}

// WriteTo drops packets to cut peers.
func (c *CutTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if c.cut(addr, false) {
		return time.Now(), nil
	}
	return c.inner.WriteTo(b, addr)
}

// WriteToAddress drops packets to cut peers.
func (c *CutTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if c.cut(a.Addr, false) {
		return time.Now(), nil
	}
	return c.inner.WriteToAddress(b, a)
}

// PacketCh delivers the inbound packets that are not from cut peers.
func (c *CutTransport) PacketCh() <-chan *memberlist.Packet { return c.packets }

// DialTimeout refuses streams to cut peers.
func (c *CutTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if c.cut(addr, false) {
		return nil, fmt.Errorf("dial %s: %w", addr, ErrLinkCut)
	}
	return c.inner.DialTimeout(addr, timeout)
}

// DialAddressTimeout refuses streams to cut peers.
func (c *CutTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if c.cut(a.Addr, false) {
		return nil, fmt.Errorf("dial %s: %w", a.Addr, ErrLinkCut)
	}
	return c.inner.DialAddressTimeout(a, timeout)
}

// StreamCh is the wrapped transport's (see the type's comment).
func (c *CutTransport) StreamCh() <-chan net.Conn { return c.inner.StreamCh() }

// Shutdown shuts the wrapped transport down and stops the packet filter.
// It may be called more than once.
func (c *CutTransport) Shutdown() error {
	err := c.inner.Shutdown()
	c.once.Do(func() { close(c.done) })
	c.wg.Wait()
	return err
}
