// faults.go: the fault-injecting wrappers of a node process: one around the
// library's data Transport, one around memberlist's transport, both driven by
// one block list that the controller switches over the control endpoint.

package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamo-kv/dynamo/transport"
	"github.com/hashicorp/memberlist"
)

// blockList is the set of peer addresses ("host:port", data and gossip) this
// node must not talk to. A partition is made symmetric by the controller,
// which gives each side the other side's addresses.
type blockList struct {
	mu      sync.RWMutex
	blocked map[string]bool

	dropped atomic.Int64 // messages, packets and dials refused so far
}

func newBlockList(addrs []string) *blockList {
	b := &blockList{blocked: map[string]bool{}}
	b.set(addrs)
	return b
}

// set replaces the block list; an empty list heals.
func (b *blockList) set(addrs []string) {
	m := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		if a != "" {
			m[a] = true
		}
	}
	b.mu.Lock()
	b.blocked = m
	b.mu.Unlock()
}

// list returns the blocked addresses, sorted.
func (b *blockList) list() []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]string, 0, len(b.blocked))
	for a := range b.blocked {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// cut reports whether addr is blocked, and counts the drop if it is.
func (b *blockList) cut(addr string) bool {
	b.mu.RLock()
	cut := b.blocked[addr]
	b.mu.RUnlock()
	if cut {
		b.dropped.Add(1)
	}
	return cut
}

// faultTransport wraps the node's data Transport: a Call to a blocked
// address fails at once with transport.ErrUnreachable, as a broken network
// would, and nothing is sent. An inbound request does not say who sent it, so
// the inbound direction is cut by the peer, which blocks this node's address
// in its own list. Serve, Addr and Close are the wrapped Transport's.
type faultTransport struct {
	transport.Transport
	blocks *blockList
}

var _ transport.Transport = (*faultTransport)(nil)

// Call forwards to the wrapped Transport unless addr is blocked.
func (f *faultTransport) Call(ctx context.Context, addr string, req []byte) ([]byte, error) {
	if f.blocks.cut(addr) {
		return nil, fmt.Errorf("%w: %s is partitioned away (nemesis)", transport.ErrUnreachable, addr)
	}
	return f.Transport.Call(ctx, addr, req)
}

// faultGossip wraps memberlist's transport. Outbound packets to a blocked
// address are dropped (WriteTo reports success, as UDP would), outbound
// streams to it fail to dial, and inbound packets from it (Packet.From, the
// sender's gossip address: memberlist sends from its listening socket) are
// dropped before memberlist sees them. Inbound streams come from an ephemeral
// port, so they are cut by the dialling peer's own list.
type faultGossip struct {
	inner  memberlist.NodeAwareTransport
	blocks *blockList

	packets chan *memberlist.Packet
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

var _ memberlist.NodeAwareTransport = (*faultGossip)(nil)

// nodeAwareShim lifts a plain Transport to a NodeAwareTransport, as
// memberlist itself does for transports that are not node-aware.
type nodeAwareShim struct{ memberlist.Transport }

func (s nodeAwareShim) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return s.WriteTo(b, a.Addr)
}

func (s nodeAwareShim) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return s.DialTimeout(a.Addr, timeout)
}

// newFaultGossip wraps inner and starts filtering its inbound packets. The
// wrapper owns inner: Shutdown shuts it down.
func newFaultGossip(inner memberlist.Transport, blocks *blockList) *faultGossip {
	na, ok := inner.(memberlist.NodeAwareTransport)
	if !ok {
		na = nodeAwareShim{inner}
	}
	f := &faultGossip{inner: na, blocks: blocks, packets: make(chan *memberlist.Packet), done: make(chan struct{})}
	f.wg.Add(1)
	go f.filterPackets()
	return f
}

func (f *faultGossip) filterPackets() {
	defer f.wg.Done()
	in := f.inner.PacketCh()
	for {
		select {
		case p := <-in:
			if p == nil || (p.From != nil && f.blocks.cut(p.From.String())) {
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

// FinalAdvertiseAddr is the wrapped transport's.
func (f *faultGossip) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return f.inner.FinalAdvertiseAddr(ip, port)
}

// WriteTo drops packets to blocked addresses.
func (f *faultGossip) WriteTo(b []byte, addr string) (time.Time, error) {
	if f.blocks.cut(addr) {
		return time.Now(), nil
	}
	return f.inner.WriteTo(b, addr)
}

// WriteToAddress drops packets to blocked addresses.
func (f *faultGossip) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if f.blocks.cut(a.Addr) {
		return time.Now(), nil
	}
	return f.inner.WriteToAddress(b, a)
}

// PacketCh delivers the inbound packets that are not from blocked addresses.
func (f *faultGossip) PacketCh() <-chan *memberlist.Packet { return f.packets }

// DialTimeout refuses streams to blocked addresses.
func (f *faultGossip) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if f.blocks.cut(addr) {
		return nil, fmt.Errorf("dial %s: partitioned away (nemesis)", addr)
	}
	return f.inner.DialTimeout(addr, timeout)
}

// DialAddressTimeout refuses streams to blocked addresses.
func (f *faultGossip) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if f.blocks.cut(a.Addr) {
		return nil, fmt.Errorf("dial %s: partitioned away (nemesis)", a.Addr)
	}
	return f.inner.DialAddressTimeout(a, timeout)
}

// StreamCh is the wrapped transport's (see the type's comment).
func (f *faultGossip) StreamCh() <-chan net.Conn { return f.inner.StreamCh() }

// Shutdown shuts the wrapped transport down and stops the packet filter.
func (f *faultGossip) Shutdown() error {
	err := f.inner.Shutdown()
	f.once.Do(func() { close(f.done) })
	f.wg.Wait()
	return err
}
