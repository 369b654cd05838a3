// Tests of the tcp transport with auth credentials: conformance, the peer's NodeID in handlers, strangers refused, rotation without a failed call.
package tcp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/auth"
	"github.com/dynamo-kv/dynamo/auth/authtest"
	"github.com/dynamo-kv/dynamo/transport"
	"github.com/dynamo-kv/dynamo/transport/tcp"
	"github.com/dynamo-kv/dynamo/transport/transporttest"
)

var (
	secretA = bytes.Repeat([]byte{'A'}, 32)
	secretB = bytes.Repeat([]byte{'B'}, 32)
)

func creds(t *testing.T, id string, secrets ...[]byte) *auth.Credentials {
	t.Helper()
	c, err := auth.FromSecrets("test", id, secrets)
	require.NoError(t, err)
	return c
}

func withCreds(c *auth.Credentials) tcp.Options {
	return tcp.Options{TLS: c.TLSConfig(), Identify: c.PeerNodeID}
}

func TestTCP_Conformance_Secret(t *testing.T) {
	transporttest.Run(t, func(t *testing.T) transporttest.Factory {
		opts := withCreds(creds(t, "node", secretA))
		opts.MaxFrameSize = 64 << 10
		return factory{opts}
	})
}

// whoCalled answers with the NodeID its ctx names.
func whoCalled(ctx context.Context, _ []byte) ([]byte, error) {
	p, ok := transport.PeerFromContext(ctx)
	if !ok {
		return nil, errors.New("no peer in ctx")
	}
	return []byte(p.NodeID), nil
}

func TestTCP_HandlerSeesPeerNodeID(t *testing.T) {
	server := listen(t, withCreds(creds(t, "server", secretA)))
	require.NoError(t, server.Serve(whoCalled))
	for _, id := range []string{"alice", "bob"} {
		client := listen(t, withCreds(creds(t, id, secretA)))
		got, err := client.Call(ctx(t), server.Addr(), nil)
		require.NoError(t, err)
		require.Equal(t, id, string(got))
	}
	// Without TLS the transport authenticates no one.
	plain := listen(t, tcp.Options{})
	require.NoError(t, plain.Serve(whoCalled))
	got, err := listen(t, tcp.Options{}).Call(ctx(t), plain.Addr(), nil)
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestTCP_StrangersRefused(t *testing.T) {
	server := listen(t, withCreds(creds(t, "server", secretA)))
	require.NoError(t, server.Serve(echo))
	for name, opts := range map[string]tcp.Options{
		"another secret": withCreds(creds(t, "stranger", secretB)),
		"no TLS":         {},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := listen(t, opts).Call(ctx(t), server.Addr(), []byte("hello"))
			require.ErrorIs(t, err, transport.ErrUnreachable)
		})
	}
	// A raw socket speaking the frame format gets no reply: the bytes are
	// not a TLS handshake.
	nc := dialRaw(t, server.Addr())
	_, err := nc.Write(frame(1, kindRequest, 1, 0, []byte("hello")))
	require.NoError(t, err)
	_, err = readRaw(nc)
	require.Error(t, err)
	eventually(t, func() bool { return server.Stats().HandshakeFailures == 3 }, "three failed handshakes")
}

// rotation runs three nodes calling each other without pause while each
// step is applied to one node after another, each followed by Redial, and
// requires every call to succeed.
func rotation(t *testing.T, initial []*auth.Credentials, steps []func(i int, c *auth.Credentials) error) {
	nodes := make([]*tcp.Transport, len(initial))
	for i, c := range initial {
		nodes[i] = listen(t, withCreds(c))
		require.NoError(t, nodes[i].Serve(whoCalled))
	}
	var (
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		okCalls  = make([]atomic.Int64, len(nodes)*len(nodes))
		failures atomic.Int64
		firstErr atomic.Value
	)
	for i, from := range nodes {
		for j, to := range nodes {
			if i == j {
				continue
			}
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					got, err := from.Call(ctx(t), to.Addr(), nil)
					if err == nil && string(got) != initial[i].NodeID() {
						err = fmt.Errorf("%s saw the call from %s as from %q", initial[j].NodeID(), initial[i].NodeID(), got)
					}
					if err != nil {
						failures.Add(1)
						firstErr.CompareAndSwap(nil, err)
						continue
					}
					okCalls[i*len(nodes)+j].Add(1)
				}
			})
		}
	}
	progress := func(what string) {
		t.Helper()
		base := make([]int64, len(okCalls))
		for k := range okCalls {
			base[k] = okCalls[k].Load()
		}
		eventually(t, func() bool {
			for i := range nodes {
				for j := range nodes {
					if k := i*len(nodes) + j; i != j && okCalls[k].Load() < base[k]+5 {
						return false
					}
				}
			}
			return true
		}, "calls between every pair "+what)
	}
	progress("before the rotation")
	for s, step := range steps {
		for i, c := range initial {
			accepted := make([]uint64, len(nodes))
			for j, n := range nodes {
				accepted[j] = n.Stats().Accepted
			}
			require.NoError(t, step(i, c))
			nodes[i].Redial()
			progress(fmt.Sprintf("after step %d on node %d", s, i))
			for j, n := range nodes {
				if j != i {
					require.Greater(t, n.Stats().Accepted, accepted[j], "node %d redialled %d under its new credentials", i, j)
				}
			}
		}
	}
	close(stop)
	wg.Wait()
	require.Zero(t, failures.Load(), "calls failed during the rotation; the first: %v", firstErr.Load())
}

// A cluster moves from secret A to [B, A] to [B] without a failed call, and
// A alone is refused at the end.
func TestTCP_RotateSecrets_NoFailedCalls(t *testing.T) {
	initial := []*auth.Credentials{creds(t, "n1", secretA), creds(t, "n2", secretA), creds(t, "n3", secretA)}
	rotation(t, initial, []func(int, *auth.Credentials) error{
		func(_ int, c *auth.Credentials) error { return c.RotateSecrets(auth.Secrets{secretB, secretA}) },
		func(_ int, c *auth.Credentials) error { return c.RotateSecrets(auth.Secrets{secretB}) },
	})
	server := listen(t, withCreds(initial[0]))
	require.NoError(t, server.Serve(echo))
	_, err := listen(t, withCreds(creds(t, "old", secretA))).Call(ctx(t), server.Addr(), nil)
	require.ErrorIs(t, err, transport.ErrUnreachable)
}

// The same with an operator's CA: add the new CA, move to certificates
// from it, drop the old one.
func TestTCP_RotateCA_NoFailedCalls(t *testing.T) {
	oldCA, err := authtest.NewCA("old")
	require.NoError(t, err)
	newCA, err := authtest.NewCA("new")
	require.NoError(t, err)
	pki := func(id string, pool []*authtest.CA, ca *authtest.CA) auth.PKI {
		cert, err := ca.Issue("test", id)
		require.NoError(t, err)
		return auth.PKI{CAs: authtest.Pool(pool...), Certificate: cert}
	}
	var initial []*auth.Credentials
	for _, id := range []string{"n1", "n2", "n3"} {
		c, err := auth.FromPKI("test", id, pki(id, []*authtest.CA{oldCA}, oldCA))
		require.NoError(t, err)
		initial = append(initial, c)
	}
	step := func(pool []*authtest.CA, ca *authtest.CA) func(int, *auth.Credentials) error {
		return func(_ int, c *auth.Credentials) error { return c.RotatePKI(pki(c.NodeID(), pool, ca)) }
	}
	rotation(t, initial, []func(int, *auth.Credentials) error{
		step([]*authtest.CA{oldCA, newCA}, oldCA),
		step([]*authtest.CA{oldCA, newCA}, newCA),
		step([]*authtest.CA{newCA}, newCA),
	})
}

// A peer that opens more connections than a node's pool gets no more
// requests in flight: MaxPeerInFlight holds across its connections, and
// another peer is served meanwhile.
func TestServer_PeerInFlightAcrossConnections(t *testing.T) {
	const perPeer = 4
	opts := withCreds(creds(t, "server", secretA))
	opts.MaxPeerInFlight = perPeer
	server := listen(t, opts)
	var running, most atomic.Int64
	release := make(chan struct{})
	var once sync.Once
	letGo := func() { once.Do(func() { close(release) }) }
	t.Cleanup(letGo) // before the transports close, should the test fail
	require.NoError(t, server.Serve(func(ctx context.Context, req []byte) ([]byte, error) {
		if p, _ := transport.PeerFromContext(ctx); p.NodeID != "greedy" {
			return req, nil
		}
		n := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		return req, nil
	}))
	greedyOpts := withCreds(creds(t, "greedy", secretA))
	greedyOpts.ConnsPerPeer = 3
	greedy := listen(t, greedyOpts)
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			_, err := greedy.Call(ctx(t), server.Addr(), []byte("x"))
			assert.NoError(t, err)
		})
	}
	eventually(t, func() bool { return running.Load() == perPeer && server.Stats().PeerWaits > 0 }, "the greedy peer to fill its places")

	other := listen(t, withCreds(creds(t, "other", secretA)))
	reply, err := other.Call(ctx(t), server.Addr(), []byte("served"))
	require.NoError(t, err)
	require.Equal(t, "served", string(reply))

	letGo()
	wg.Wait()
	require.Equal(t, int64(perPeer), most.Load(), "greedy requests handled at once")
}
