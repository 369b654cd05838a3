// Tests of a signed cluster on real memberlist over 127.0.0.1 (§4.8): ring records change only by their owner; a forging member is refused and evicts nobody.

package gossip_test

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/auth"
	"github.com/dynamo-kv/dynamo/auth/authtest"
	"github.com/dynamo-kv/dynamo/membership"
	"github.com/dynamo-kv/dynamo/membership/gossip"
)

const testCluster = "dynamo"

var (
	secretA = bytes.Repeat([]byte{'A'}, 32)
	secretB = bytes.Repeat([]byte{'B'}, 32)
	secretC = bytes.Repeat([]byte{'C'}, 32)
)

// logCounter counts a node's log records by message, so that a test can
// wait until the node has seen, and refused, what it was sent.
type logCounter struct {
	mu   sync.Mutex
	n    map[string]int
	next slog.Handler // testLogger's, or nil
}

func newLogCounter() *logCounter {
	c := &logCounter{n: map[string]int{}}
	if l := testLogger(); l != nil {
		c.next = l.Handler()
	}
	return c
}

func (c *logCounter) Enabled(context.Context, slog.Level) bool { return true }

func (c *logCounter) Handle(ctx context.Context, r slog.Record) error {
	c.mu.Lock()
	c.n[r.Message]++
	c.mu.Unlock()
	if c.next != nil {
		return c.next.Handle(ctx, r)
	}
	return nil
}

func (c *logCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *logCounter) WithGroup(string) slog.Handler      { return c }

func (c *logCounter) count(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[msg]
}

// trust makes a node's credentials.
type trust func(t *testing.T, id string) *auth.Credentials

// fromSecrets is the cluster-secret trust with secrets.
func fromSecrets(secrets ...[]byte) trust {
	return func(t *testing.T, id string) *auth.Credentials {
		creds, err := auth.FromSecrets(testCluster, id, secrets)
		require.NoError(t, err)
		return creds
	}
}

// fromPKI is the trust of an operator's CA, which issues each node its own
// certificate only.
func fromPKI(t *testing.T) trust {
	ca, err := authtest.NewCA("test ops CA")
	require.NoError(t, err)
	return func(t *testing.T, id string) *auth.Credentials {
		cert, err := ca.Issue(testCluster, id)
		require.NoError(t, err)
		creds, err := auth.FromPKI(testCluster, id, auth.PKI{CAs: authtest.Pool(ca), Certificate: cert})
		require.NoError(t, err)
		return creds
	}
}

// signedNode is a running node of a signed cluster.
type signedNode struct {
	*gossip.Gossip
	creds *auth.Credentials
	logs  *logCounter
}

// startSigned joins node id, signing with credentials from tr.
func startSigned(t *testing.T, tr trust, id string, seeds ...string) signedNode {
	t.Helper()
	n := signedNode{creds: tr(t, id), logs: newLogCounter()}
	cfg := config(id, seeds...)
	cfg.Signer = n.creds
	cfg.Logger = slog.New(n.logs)
	n.Gossip = start(t, cfg)
	return n
}

// signedCluster starts a signed node for each ID, joining through the
// first, and waits until each sees all of them reachable.
func signedCluster(t *testing.T, tr trust, ids ...string) []signedNode {
	t.Helper()
	nodes := []signedNode{startSigned(t, tr, ids[0])}
	for _, id := range ids[1:] {
		nodes = append(nodes, startSigned(t, tr, id, nodes[0].GossipAddr()))
	}
	waitFormed(t, nodes)
	return nodes
}

// waitFormed waits until every node lists exactly the nodes given, at their
// addresses, all reachable.
func waitFormed(t *testing.T, nodes []signedNode) {
	t.Helper()
	var want []membership.Member
	gs := make([]*gossip.Gossip, len(nodes))
	for i, n := range nodes {
		want = append(want, membership.Member{ID: n.ID(), Addr: dataAddr(n.ID(), 0)})
		gs[i] = n.Gossip
	}
	slices.SortFunc(want, func(a, b membership.Member) int { return strings.Compare(a.ID, b.ID) })
	eventually(t, func() bool {
		for _, g := range gs {
			if !slices.Equal(g.Members(), want) {
				return false
			}
		}
		return allReachable(gs)
	}, "signed cluster of %d forms: %s", len(nodes), describe(gs))
}

// The refusals a node logs, one per kind of forgery.
const (
	logRefusedRecord  = "membership: refusing a ring record"
	logRefusedRemoval = "membership: refusing the removal of a live member"
	logIgnoredMessage = "membership: ignoring a user message"
)

// A member that holds valid credentials of its own forges n2's record in
// every way it can, and spreads each forgery by TCP messages, broadcasts
// and push/pull state: a record for n2 signed with its own key, n2's own
// record with its body changed, a record for n2 from a CA outside the
// cluster, a removal of n2 while n2 runs, and an unsigned record. Every
// node refuses each one, and n2 stays a reachable member at its own
// address everywhere. With the cluster secret the forger uses its own
// credentials (one that derives the secret's CA to mint a certificate for
// n2 is not stopped; see the package doc); with a PKI it has nothing else.
func TestSigned_ForgingMemberIsRefused(t *testing.T) {
	for name, tr := range map[string]trust{"secret": fromSecrets(secretA), "pki": fromPKI(t)} {
		t.Run(name, func(t *testing.T) {
			nodes := signedCluster(t, tr, "n1", "n2", "n3", "mallory")
			mallory := nodes[3]
			owner := mallory.SealedOf("n2")
			require.NotNil(t, owner, "mallory holds n2's sealed record")
			inc := mallory.Incarnation("n2")
			now := time.Now()
			// The forgeries claim an incarnation an hour ahead: n2 may
			// refute the removal before the others arrive, and its new
			// incarnation (the clock in nanoseconds) must not make them
			// stale, or a node would skip them without checking them.
			forged := inc + uint64(time.Hour)
			outsider, err := auth.FromSecrets(testCluster, "n2", auth.Secrets{secretB})
			require.NoError(t, err)

			ownKey, err := gossip.SealedRecordMessage(mallory.creds, "n2", "127.0.0.1:1", forged, true, now)
			require.NoError(t, err)
			tampered, err := gossip.TamperedMessage(owner, forged)
			require.NoError(t, err)
			foreignCA, err := gossip.SealedRecordMessage(outsider, "n2", "127.0.0.1:1", forged, true, now)
			require.NoError(t, err)
			removal, err := gossip.RemovalMessage(mallory.creds, owner, now)
			require.NoError(t, err)
			unsigned, err := gossip.UnsignedRecordMessage("n2", "127.0.0.1:1", forged, true)
			require.NoError(t, err)
			for _, msg := range [][]byte{ownKey, tampered, foreignCA, removal, unsigned} {
				require.NoError(t, mallory.Forge(msg))
			}

			// Each node refuses each forgery. (A node may skip the removal
			// without checking it: when n2's answer to it, a record of a
			// new incarnation, came first, the removal is stale.)
			honest := nodes[:3]
			for _, n := range honest {
				eventually(t, func() bool {
					removal := n.logs.count(logRefusedRemoval) >= 1 || n.Incarnation("n2") > inc
					return n.logs.count(logRefusedRecord) >= 3 && removal && n.logs.count(logIgnoredMessage) >= 1
				}, "%s refuses every forgery: records %d, removals %d, unsigned %d", n.ID(),
					n.logs.count(logRefusedRecord), n.logs.count(logRefusedRemoval), n.logs.count(logIgnoredMessage))
			}
			waitFormed(t, nodes) // nobody evicted, n2 at its own address everywhere
			// n2 answered the removal with a new incarnation: every node
			// ends up with the record n2 signed last.
			n2 := nodes[1]
			eventually(t, func() bool {
				for _, n := range honest {
					if !bytes.Equal(n.SealedOf("n2"), n2.SealedOf("n2")) {
						return false
					}
				}
				return n2.Incarnation("n2") > inc
			}, "every node holds n2's own record")
		})
	}
}

// In a cluster without a Signer (insecure mode) any member rewrites any
// record: one unsigned record evicts n2 everywhere. This is what the
// signed cluster above refuses.
func TestUnsigned_ForgedRecordEvicts(t *testing.T) {
	nodes := cluster(t, 3)
	forged, err := gossip.UnsignedRecordMessage("n2", dataAddr("n2", 0), uint64(time.Now().Add(time.Hour).UnixNano()), true)
	require.NoError(t, err)
	require.NoError(t, nodes[2].Forge(forged))
	eventually(t, func() bool { return !slices.Contains(ids(nodes[0]), "n2") }, "n2 evicted from n1's ring: %s", describe(nodes))
}

// Remove in a signed cluster: refused for a reachable member; for a dead
// one it spreads, and a new run of the node joins again.
func TestSigned_Remove(t *testing.T) {
	tr := fromSecrets(secretA)
	nodes := signedCluster(t, tr, "n1", "n2", "n3")
	require.ErrorIs(t, nodes[0].Remove("n2"), gossip.ErrReachable)

	oldAddr := nodes[2].GossipAddr()
	require.NoError(t, nodes[2].Close())
	eventually(t, func() bool { return !nodes[0].Reachable("n3") && !nodes[1].Reachable("n3") }, "n3 unreachable")
	require.NoError(t, nodes[0].Remove("n3"))
	require.NotContains(t, ids(nodes[0].Gossip), "n3")
	eventually(t, func() bool { return !slices.Contains(ids(nodes[1].Gossip), "n3") }, "the signed removal spreads")
	require.ErrorIs(t, nodes[0].Remove("n3"), gossip.ErrUnknownMember)

	n := signedNode{creds: tr(t, "n3"), logs: newLogCounter()}
	cfg := config("n3", nodes[0].GossipAddr())
	cfg.BindAddr, cfg.Signer = oldAddr, n.creds
	n.Gossip = start(t, cfg)
	waitFormed(t, []signedNode{nodes[0], nodes[1], n})
}

// A cluster rotates its secret from A to B in three steps; each node signs
// its record again after each step, and a node that joins after the last
// step, holding only B, takes every record. Records signed with three
// secrets (a chain too large for memberlist's packets) spread too.
func TestSigned_RotationAndLargeChains(t *testing.T) {
	nodes := signedCluster(t, fromSecrets(secretA), "n1", "n2", "n3")
	for _, step := range []auth.Secrets{{secretA, secretB}, {secretB, secretA}, {secretB}} {
		for _, n := range nodes {
			require.NoError(t, n.creds.RotateSecrets(step))
			require.NoError(t, n.Resign())
		}
	}
	// Wait until every node holds every record as signed in the last step.
	eventually(t, func() bool {
		for _, n := range nodes {
			for _, m := range nodes {
				if !bytes.Equal(n.SealedOf(m.ID()), m.SealedOf(m.ID())) {
					return false
				}
			}
		}
		return true
	}, "the records signed after the rotation spread")
	nodes = append(nodes, startSigned(t, fromSecrets(secretB), "n4", nodes[0].GossipAddr()))
	waitFormed(t, nodes)

	large := signedCluster(t, fromSecrets(secretA, secretB, secretC), "l1", "l2", "l3", "l4")
	require.Greater(t, len(large[0].SealedOf("l2")), 1200, "a record with two cross-certificates is too large for a broadcast")
}

func TestSigned_ResignAfterClose(t *testing.T) {
	n := startSigned(t, fromSecrets(secretA), "n1")
	require.NoError(t, n.Close())
	require.ErrorIs(t, n.Resign(), gossip.ErrClosed)
	require.NoError(t, start(t, config("plain")).Resign(), "without a Signer there is nothing to sign")
}
