// open.go: one call to a working node with embedded defaults: bbolt in a data
// directory, the TCP transport and memberlist gossip (§4.8 membership).
package dynamo

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dynamo-kv/dynamo/auth"
	"github.com/dynamo-kv/dynamo/membership/gossip"
	"github.com/dynamo-kv/dynamo/storage/bolt"
	"github.com/dynamo-kv/dynamo/transport/tcp"
)

// NodeConfig configures Open. Its embedded Config works as for New, except
// that a nil Transport, Storage or Membership is replaced by the embedded
// default built from the fields below.
//
// With Config.Secrets or PKI, the gossip Open builds signs this node's ring
// record with the key of its certificate, and takes another node's record
// only if that node signed it: a member running dynamo cannot rewrite or
// evict another's record (see package membership/gossip). A cluster secret
// derives the CA, so whoever holds it can mint a certificate for any
// NodeID; against a compromised member, use PKI.
type NodeConfig struct {
	Config

	// Listen is the TCP address for peer traffic. Empty means
	// "127.0.0.1:0" (a free loopback port); set it to a reachable address
	// to form a cluster across machines.
	Listen string
	// GossipListen is the address memberlist binds (TCP and UDP). Empty
	// means "127.0.0.1:0".
	GossipListen string
	// Seeds are gossip addresses of nodes already in the cluster. Empty
	// starts a new cluster.
	Seeds []string
	// Zone is this node's failure domain (a rack, an availability zone),
	// published in its gossip ring record; at most membership.MaxZoneLen
	// bytes. Every key's replicas then span min(N, zones) zones; see
	// Member.Zone. Empty means none. It applies to the gossip membership
	// Open builds: with Config.Members or Config.Membership, the zones come
	// from there, and Open refuses a Zone beside them.
	Zone string
	// GossipProfile sets failure-detection timing; empty means LAN.
	GossipProfile gossip.Profile
	// GossipKey, if set, encrypts gossip (16, 24 or 32 bytes, the same on
	// every node).
	GossipKey []byte
	// JoinRetry starts the node alone when no seed answers (a node restarted
	// inside a partition) and keeps contacting the seeds until one does.
	// Without it, Open fails when no seed answers.
	JoinRetry bool
	// TLS, if set, secures peer traffic; set ClientAuth to
	// tls.RequireAndVerifyClientCert for mutual TLS. Gossip that Open
	// starts then needs GossipKey, and its ring records are not signed:
	// any node holding GossipKey can rewrite another's. Secrets and PKI
	// sign them.
	TLS *tls.Config

	// PKI authenticates the TCP transport with an operator's CA instead:
	// each node's certificate names it as dynamo://<cluster>/<node-id>.
	// Gossip that Open starts then needs GossipKey; its ring records are
	// signed with the node's certificate key.
	PKI *auth.PKI
	// Insecure runs without peer authentication: anyone who reaches the
	// ports can read, write and join, and ring records are not signed, so
	// any node can rewrite or evict another. For tests and trusted
	// networks only.
	Insecure bool
}

// Node is a Store with the plug-ins Open built for it. Its methods are the
// Store's; Close and Leave also release the plug-ins.
type Node struct {
	*Store
	transport *tcp.Transport
	storage   *bolt.Store
	gossip    *gossip.Gossip
	creds     *auth.Credentials // from Secrets or PKI: the transport's and gossip's
	cluster   string            // set when opened with Secrets
}

// Open starts a node whose data lives in dir (created if absent): bbolt in
// dir/dynamo.db, peers over TCP, membership by memberlist joined through
// cfg.Seeds. Close the Node to stop it; Leave to leave the ring first. It
// refuses to start without peer authentication (NodeConfig.Secrets, PKI or
// TLS) unless NodeConfig.Insecure says so.
func Open(ctx context.Context, dir string, cfg NodeConfig) (_ *Node, err error) {
	sec, err := checkSecurity(cfg)
	if err != nil {
		return nil, err
	}
	n := &Node{}
	if len(cfg.Secrets) > 0 {
		n.cluster = cfg.Config.withDefaults().Cluster
	}
	defer func() {
		if err != nil {
			n.release()
		}
	}()
	if cfg.Zone != "" && (cfg.Membership != nil || len(cfg.Members) > 0) {
		return nil, fmt.Errorf("%w: NodeConfig.Zone (%q) applies only to the gossip membership Open builds; give the zone in Config.Members or Config.Membership instead", ErrInvalidConfig, cfg.Zone)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("dynamo: open %s: %w", dir, err)
	}
	if cfg.Storage == nil {
		if n.storage, err = bolt.Open(filepath.Join(dir, "dynamo.db"), nil); err != nil {
			return nil, fmt.Errorf("dynamo: open storage: %w", err)
		}
		cfg.Storage = n.storage
	}
	if cfg.Transport == nil {
		addr := cfg.Listen
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		if n.transport, err = tcp.Listen(addr, sec.tcpOptions(cfg)); err != nil {
			return nil, fmt.Errorf("dynamo: listen: %w", err)
		}
		cfg.Transport = n.transport
	}
	n.creds = sec.creds
	if cfg.Membership == nil && len(cfg.Members) == 0 {
		bind := cfg.GossipListen
		if bind == "" {
			bind = "127.0.0.1:0"
		}
		gcfg := gossip.Config{
			NodeID: cfg.NodeID, BindAddr: bind, DataAddr: cfg.Transport.Addr(), Seeds: cfg.Seeds, Zone: cfg.Zone,
			SecretKey: cfg.GossipKey, SecretKeys: sec.gossipKeys, Profile: cfg.GossipProfile, Logger: cfg.Logger, JoinRetry: cfg.JoinRetry,
		}
		if sec.creds != nil {
			gcfg.Signer = sec.creds // ring records signed by their owner
		}
		n.gossip, err = gossip.Join(ctx, gcfg)
		if err != nil {
			return nil, fmt.Errorf("dynamo: join: %w", err)
		}
		cfg.Membership = n.gossip
	}
	if n.Store, err = New(cfg.Config); err != nil {
		return nil, err
	}
	return n, nil
}

// GossipAddr is the address other nodes pass as a seed to join this one, or
// "" when Open did not start gossip.
func (n *Node) GossipAddr() string {
	if n.gossip == nil {
		return ""
	}
	return n.gossip.GossipAddr()
}

// Addr is the node's peer (TCP) address, or "" when Open did not start TCP.
func (n *Node) Addr() string {
	if n.transport == nil {
		return ""
	}
	return n.transport.Addr()
}

// Close stops the node without leaving the ring: to the others it looks like
// a crash, and its partitions stay assigned to it until it returns.
func (n *Node) Close() error {
	var err error
	if n.Store != nil {
		err = n.Store.Close()
	}
	return errors.Join(err, n.release())
}

// Leave takes the node out of the ring for good: it pushes every partition
// it holds to the owners that take over (Decommission), announces the leave,
// waits up to timeout for the announcement to spread, and closes the node.
// If the push fails, Leave returns its error and the node stays in the ring.
func (n *Node) Leave(ctx context.Context, timeout time.Duration) error {
	if err := n.Decommission(ctx); err != nil && !errors.Is(err, ErrNoReplica) {
		return fmt.Errorf("dynamo: leave: %w", err)
	}
	var err error
	if n.gossip != nil {
		err = n.gossip.Leave(timeout)
	}
	return errors.Join(err, n.Close())
}

func (n *Node) release() error {
	var errs []error
	if n.gossip != nil {
		errs = append(errs, n.gossip.Close())
	}
	if n.transport != nil {
		errs = append(errs, n.transport.Close())
	}
	if n.storage != nil {
		errs = append(errs, n.storage.Close())
	}
	return errors.Join(errs...)
}
