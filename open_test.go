// open_test.go: Open's trust boundary: it refuses to start unauthenticated,
// an outsider who knows only the ports can neither read, write, list, plant
// hints nor join a cluster opened with a secret, and secrets rotate while
// the cluster serves.
package dynamo

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/auth"
	"github.com/dynamo-kv/dynamo/auth/authtest"
	"github.com/dynamo-kv/dynamo/membership/gossip"
	"github.com/dynamo-kv/dynamo/transport"
	"github.com/dynamo-kv/dynamo/transport/tcp"
)

var (
	secretA = bytes.Repeat([]byte{'A'}, 32)
	secretB = bytes.Repeat([]byte{'B'}, 32)
)

// openTimeout bounds the waits of these tests.
const openTimeout = 15 * time.Second

// openNode opens a node with a small ring in its own directory, joining
// seeds, and closes it when the test ends.
func openNode(t *testing.T, id string, seeds []string, edit func(*NodeConfig)) *Node {
	t.Helper()
	base := DefaultConfig()
	base.NodeID = id
	base.Partitions = 64
	// No replica fails in these tests; a TLS handshake under -race on a
	// loaded machine may take longer than the default 500ms.
	base.ReplicaTimeout, base.RequestTimeout = 5*time.Second, openTimeout
	cfg := NodeConfig{Config: base, Seeds: seeds, GossipProfile: gossip.ProfileLocal}
	edit(&cfg)
	ctx, cancel := context.WithTimeout(t.Context(), openTimeout)
	defer cancel()
	n, err := Open(ctx, filepath.Join(t.TempDir(), id), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Close()) })
	return n
}

// openCluster opens size nodes with edit applied to each, and waits until
// every node's ring holds them all.
func openCluster(t *testing.T, size int, edit func(*NodeConfig)) []*Node {
	t.Helper()
	var nodes []*Node
	var seeds []string
	for i := range size {
		n := openNode(t, fmt.Sprintf("n%d", i), seeds, edit)
		nodes = append(nodes, n)
		seeds = []string{nodes[0].GossipAddr()}
	}
	waitUntil(t, func() bool {
		for _, n := range nodes {
			if len(n.PreferenceList([]byte("probe"), size)) < size {
				return false
			}
		}
		return true
	}, "every ring to hold %d nodes", size)
	return nodes
}

func waitUntil(t *testing.T, cond func() bool, what string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(openTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for "+what, append([]any{openTimeout}, args...)...)
		}
		<-tick.C
	}
}

func withSecrets(secrets ...[]byte) func(*NodeConfig) {
	return func(c *NodeConfig) { c.Secrets = secrets }
}

func TestOpen_RefusesWithoutPeerAuthentication(t *testing.T) {
	tlsCfg, err := auth.FromSecrets("dynamo", "n1", auth.Secrets{secretA})
	require.NoError(t, err)
	tests := map[string]struct {
		edit func(*NodeConfig)
		want string
	}{
		"nothing":                {func(*NodeConfig) {}, "no peer authentication"},
		"secret and insecure":    {func(c *NodeConfig) { c.Secrets, c.Insecure = [][]byte{secretA}, true }, "only one of"},
		"secret and gossip key":  {func(c *NodeConfig) { c.Secrets, c.GossipKey = [][]byte{secretA}, secretB[:16] }, "GossipKey is derived"},
		"TLS with open gossip":   {func(c *NodeConfig) { c.TLS = tlsCfg.TLSConfig() }, "gossip would run in the clear"},
		"short secret":           {func(c *NodeConfig) { c.Secrets = [][]byte{[]byte("short")} }, "secret 0 is 5 bytes"},
		"cluster not a URI host": {func(c *NodeConfig) { c.Secrets, c.Cluster = [][]byte{secretA}, "my cluster" }, "cluster name"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := NodeConfig{Config: DefaultConfig()}
			cfg.NodeID = "n1"
			tt.edit(&cfg)
			dir := filepath.Join(t.TempDir(), "node")
			_, err := Open(t.Context(), dir, cfg)
			require.ErrorIs(t, err, ErrInvalidConfig)
			require.ErrorContains(t, err, tt.want)
			require.NoDirExists(t, dir, "a refused Open left files behind")
		})
	}
}

// rawCall sends payload as one request frame of the tcp wire format on a
// fresh socket, and returns what comes back before the server hangs up.
func rawCall(t *testing.T, addr string, payload []byte) []byte {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer nc.Close()
	require.NoError(t, nc.SetDeadline(time.Now().Add(openTimeout)))
	hdr := make([]byte, 18)
	binary.BigEndian.PutUint32(hdr[0:4], uint32(14+len(payload)))
	hdr[4], hdr[5] = 1, 1 // wire version 1, a request
	binary.BigEndian.PutUint64(hdr[6:14], 1)
	binary.BigEndian.PutUint32(hdr[14:18], 5000)
	_, err = nc.Write(append(hdr, payload...))
	require.NoError(t, err)
	if _, err := io.ReadFull(nc, hdr); err != nil {
		return nil // hung up without a frame
	}
	reply := make([]byte, binary.BigEndian.Uint32(hdr[0:4])-14)
	_, err = io.ReadFull(nc, reply)
	require.NoError(t, err)
	return reply
}

// outsiderRequests are what an outsider who knows the wire format sends:
// a read, a write, a planted hint and a listing of every partition.
func outsiderRequests(s *Store, stolenState []byte) map[string][]byte {
	all := make([]uint32, min(s.cfg.Partitions, maxPartsListed))
	for i := range all {
		all[i] = uint32(i)
	}
	enc := func(b body) []byte { return encodeMessage(s.wireCluster, "outsider", b) }
	return map[string][]byte{
		"read":  enc(&getReq{Key: []byte("secret-key")}),
		"write": enc(&putReq{Key: []byte("injected"), Value: []byte("evil"), W: 1, TimeoutMS: 2000}),
		"hint":  enc(&replicateReq{Key: []byte("planted"), State: stolenState, HintFor: "ghost"}),
		"list":  enc(&keysReq{Parts: all}),
	}
}

// The same raw requests that read, write, plant and list on a node opened
// Insecure all fail on a cluster opened with a secret.
func TestOpen_OutsiderWithRawFramesGetsNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), openTimeout)
	defer cancel()

	// The control: an insecure node of one answers every request.
	open := openNode(t, "open", nil, func(c *NodeConfig) { c.Insecure, c.N, c.R, c.W = true, 1, 1, 1 })
	require.NoError(t, open.Put(ctx, []byte("secret-key"), []byte("s3cret"), Context{}))
	got, err := decodeMessage(rawCall(t, open.Addr(), outsiderRequests(open.Store, nil)["read"]), open.wire)
	require.NoError(t, err)
	require.IsType(t, &getReply{}, got.Body)
	stolen := got.Body.(*getReply).State
	require.NotEmpty(t, stolen, "the insecure node gave its data away")
	for name, m := range outsiderRequests(open.Store, stolen) {
		reply, err := decodeMessage(rawCall(t, open.Addr(), m), open.wire)
		require.NoError(t, err, name)
		require.NotEqual(t, kindError, reply.Body.kind(), "%s on the insecure node: %+v", name, reply.Body)
	}
	sib, _, err := open.Get(ctx, []byte("injected"))
	require.NoError(t, err)
	require.Len(t, sib, 1, "the outsider's write landed on the insecure node")
	require.Equal(t, 1, open.Stats().Hints.Pending["ghost"])

	// The cluster opened the default way.
	nodes := openCluster(t, 3, withSecrets(secretA))
	require.NoError(t, nodes[0].Put(ctx, []byte("secret-key"), []byte("s3cret"), Context{}))
	for _, n := range nodes {
		for name, m := range outsiderRequests(n.Store, stolen) {
			reply := rawCall(t, n.Addr(), m)
			// At most a TLS alert record (content type 21), never a frame.
			require.True(t, len(reply) == 0 || reply[0] == 21, "%s answered %q", name, reply)
		}
	}
	for _, n := range nodes {
		sib, _, err := n.Get(ctx, []byte("injected"))
		require.NoError(t, err)
		require.Empty(t, sib, "the outsider's write landed")
		require.Empty(t, n.Stats().Hints.Pending, "the outsider planted a hint")
	}
}

// Outsiders with the tcp transport itself: without TLS, with another
// secret, or with a certificate for a node of the cluster from a CA of
// their own.
func TestOpen_OutsiderTransportsRefused(t *testing.T) {
	nodes := openCluster(t, 1, withSecrets(secretA))
	req := encodeMessage(nodes[0].wireCluster, "n0", &getReq{Key: []byte("k")})
	other, err := auth.FromSecrets(DefaultCluster, "n1", auth.Secrets{secretB})
	require.NoError(t, err)
	rogueCA, err := authtest.NewCA("rogue")
	require.NoError(t, err)
	cert, err := rogueCA.Issue(DefaultCluster, "n1")
	require.NoError(t, err)
	rogue, err := auth.FromPKI(DefaultCluster, "n1", auth.PKI{CAs: authtest.Pool(rogueCA), Certificate: cert})
	require.NoError(t, err)
	for name, opts := range map[string]tcp.Options{
		"no TLS":         {},
		"another secret": {TLS: other.TLSConfig()},
		"rogue CA":       {TLS: rogue.TLSConfig()},
	} {
		t.Run(name, func(t *testing.T) {
			tr, err := tcp.Listen("127.0.0.1:0", opts)
			require.NoError(t, err)
			defer tr.Close()
			ctx, cancel := context.WithTimeout(t.Context(), openTimeout)
			defer cancel()
			_, err = tr.Call(ctx, nodes[0].Addr(), req)
			require.ErrorIs(t, err, transport.ErrUnreachable)
		})
	}
}

// A raw memberlist node, without the key or with another, cannot join.
func TestOpen_OutsiderCannotJoinGossip(t *testing.T) {
	nodes := openCluster(t, 2, withSecrets(secretA))
	wrong, err := auth.Secrets{secretB}.GossipKeys(DefaultCluster)
	require.NoError(t, err)
	for name, keys := range map[string][][]byte{"no key": nil, "another secret's key": wrong} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), openTimeout)
			defer cancel()
			_, err := gossip.Join(ctx, gossip.Config{
				NodeID: "outsider", BindAddr: "127.0.0.1:0", DataAddr: "127.0.0.1:1",
				Seeds: []string{nodes[0].GossipAddr()}, Profile: gossip.ProfileLocal, SecretKeys: keys,
			})
			require.ErrorIs(t, err, gossip.ErrJoin)
		})
	}
	for _, n := range nodes {
		require.Len(t, n.PreferenceList([]byte("probe"), 3), 2, "the outsider entered the ring")
	}
}

// rotateUnderLoad applies each step to every node in turn while clients
// write and read through all of them, and requires no operation to fail.
func rotateUnderLoad(t *testing.T, nodes []*Node, steps []func(*Node) error) {
	t.Helper()
	var (
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		ops      atomic.Int64
		failures atomic.Int64
		firstErr atomic.Value
	)
	for c := range 3 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := nodes[(c+i)%len(nodes)]
				key := fmt.Appendf(nil, "c%d-%d", c, i%50)
				ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
				err := n.Put(ctx, key, []byte("v"), Context{})
				if err == nil {
					_, _, err = nodes[(c+i+1)%len(nodes)].Get(ctx, key)
				}
				cancel()
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				ops.Add(1)
			}
		})
	}
	progress := func() {
		t.Helper()
		base := ops.Load()
		waitUntil(t, func() bool { return ops.Load() >= base+20 }, "20 more operations")
	}
	progress()
	for _, step := range steps {
		for _, n := range nodes {
			require.NoError(t, step(n))
			progress()
		}
	}
	close(stop)
	wg.Wait()
	require.Zero(t, failures.Load(), "operations failed during the rotation; the first: %v", firstErr.Load())
}

// Secrets rotate A → [A, B] → [B, A] → [B] on every node in turn while
// clients write and read through all of them: no call fails, and a node
// holding only A cannot join at the end.
func TestNode_RotateSecrets_NoFailedCalls(t *testing.T) {
	nodes := openCluster(t, 3, withSecrets(secretA))
	var steps []func(*Node) error
	for _, secrets := range [][][]byte{{secretA, secretB}, {secretB, secretA}, {secretB}} {
		steps = append(steps, func(n *Node) error { return n.RotateSecrets(secrets) })
	}
	rotateUnderLoad(t, nodes, steps)

	base := DefaultConfig()
	base.NodeID, base.Partitions = "late", 64
	base.Secrets = [][]byte{secretA}
	ctx, cancel := context.WithTimeout(t.Context(), openTimeout)
	defer cancel()
	_, err := Open(ctx, t.TempDir(), NodeConfig{Config: base,
		Seeds: []string{nodes[0].GossipAddr()}, GossipProfile: gossip.ProfileLocal})
	require.ErrorIs(t, err, gossip.ErrJoin)
	require.ErrorIs(t, nodes[0].RotateSecrets([][]byte{[]byte("short")}), auth.ErrInvalidSecret)

	// The data port follows: a peer holding A alone is refused, B is let in.
	req := encodeMessage(nodes[0].wireCluster, "n0", &getReq{Key: []byte("k")})
	for secret, want := range map[string]error{string(secretA): transport.ErrUnreachable, string(secretB): nil} {
		creds, err := auth.FromSecrets(DefaultCluster, "peer", auth.Secrets{[]byte(secret)})
		require.NoError(t, err)
		tr, err := tcp.Listen("127.0.0.1:0", tcp.Options{TLS: creds.TLSConfig()})
		require.NoError(t, err)
		_, err = tr.Call(ctx, nodes[1].Addr(), req)
		require.NoError(t, tr.Close())
		if want == nil {
			require.NoError(t, err)
		} else {
			require.ErrorIs(t, err, want)
		}
	}
}

// The PKI path through Open: certificates from an operator's CA, gossip
// under GossipKey, and a CA rotated in three steps without a failed call.
func TestOpen_PKI_RotatesCA(t *testing.T) {
	oldCA, err := authtest.NewCA("old")
	require.NoError(t, err)
	newCA, err := authtest.NewCA("new")
	require.NoError(t, err)
	pki := func(id string, ca *authtest.CA, pool ...*authtest.CA) auth.PKI {
		cert, err := ca.Issue(DefaultCluster, id)
		require.NoError(t, err)
		return auth.PKI{CAs: authtest.Pool(pool...), Certificate: cert}
	}
	nodes := openCluster(t, 3, func(c *NodeConfig) {
		p := pki(c.NodeID, oldCA, oldCA)
		c.PKI, c.GossipKey = &p, secretA
	})
	require.ErrorIs(t, nodes[0].RotateSecrets([][]byte{secretB}), ErrInvalidConfig)
	step := func(ca *authtest.CA, pool ...*authtest.CA) func(*Node) error {
		return func(n *Node) error { return n.RotatePKI(pki(n.Store.cfg.NodeID, ca, pool...)) }
	}
	rotateUnderLoad(t, nodes, []func(*Node) error{step(oldCA, oldCA, newCA), step(newCA, oldCA, newCA), step(newCA, newCA)})

	// A peer with a certificate from the old CA is refused now.
	old, err := auth.FromPKI(DefaultCluster, "n9", pki("n9", oldCA, oldCA))
	require.NoError(t, err)
	tr, err := tcp.Listen("127.0.0.1:0", tcp.Options{TLS: old.TLSConfig()})
	require.NoError(t, err)
	defer tr.Close()
	ctx, cancel := context.WithTimeout(t.Context(), openTimeout)
	defer cancel()
	_, err = tr.Call(ctx, nodes[0].Addr(), encodeMessage(nodes[0].wireCluster, "n0", &getReq{Key: []byte("k")}))
	require.ErrorIs(t, err, transport.ErrUnreachable)
}
