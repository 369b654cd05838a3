// faultnet.go: a fault-injecting transport.Transport that cuts a node off from its peers inside one process (§4.6 failures).

package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/dynamo-kv/dynamo/transport"
)

// cutTransport wraps a node's Transport and refuses calls to blocked
// addresses with transport.ErrUnreachable, as a broken network would.
//
// An inbound Handler does not learn the caller's address, so a cut is made on
// the calling side only, in both directions: every node blocks the cut-off
// node's address, and the cut-off node blocks everyone (isolate). Serve, Addr
// and Close are the wrapped Transport's; the caller still closes it.
type cutTransport struct {
	transport.Transport

	mu       sync.Mutex
	blocked  map[string]bool
	isolated bool
}

var _ transport.Transport = (*cutTransport)(nil)

func newCutTransport(t transport.Transport) *cutTransport {
	return &cutTransport{Transport: t, blocked: map[string]bool{}}
}

// Call forwards to the wrapped Transport unless addr is cut off.
func (c *cutTransport) Call(ctx context.Context, addr string, req []byte) ([]byte, error) {
	if c.isCut(addr) {
		return nil, fmt.Errorf("%w: %s is cut off", transport.ErrUnreachable, addr)
	}
	return c.Transport.Call(ctx, addr, req)
}

// block cuts calls to addr; isolate cuts calls to every address.
func (c *cutTransport) block(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.blocked[addr] = true
}

func (c *cutTransport) isolate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.isolated = true
}

// heal lets every call through again.
func (c *cutTransport) heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.blocked)
	c.isolated = false
}

func (c *cutTransport) isCut(addr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.isolated || c.blocked[addr]
}
