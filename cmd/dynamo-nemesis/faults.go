// faults.go: the fault-injecting wrappers of a node process: one around the
// library's data Transport, one around memberlist's transport, both driven by
// one block list that the controller switches over the control endpoint.

package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/dynamo-kv/dynamo/membership/gossip"
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

// newFaultGossip wraps memberlist's transport so that blocks cuts gossip
// too, in both directions (see gossip.CutTransport). The wrapper owns
// inner: Shutdown shuts it down.
func newFaultGossip(inner memberlist.Transport, blocks *blockList) *gossip.CutTransport {
	return gossip.NewCutTransport(inner, func(peer string, _ bool) bool { return blocks.cut(peer) })
}
