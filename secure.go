// secure.go: the trust boundary of Open: peers authenticated by the cluster secret, a PKI or a TLS config, or an explicit insecure mode.
package dynamo

import (
	"errors"
	"fmt"

	"github.com/dynamo-kv/dynamo/auth"
	"github.com/dynamo-kv/dynamo/transport/tcp"
)

// security is how Open secures the transport and gossip it builds.
type security struct {
	creds      *auth.Credentials // from Secrets or PKI; nil otherwise
	gossipKeys [][]byte          // memberlist's keyring; nil: GossipKey or none
}

// checkSecurity reports every problem with cfg's choice of peer
// authentication, wrapped in ErrInvalidConfig, and derives the credentials
// and keys Open needs. Exactly one of Secrets, PKI, TLS and Insecure must be
// set, and gossip that Open starts must be encrypted unless Insecure.
func checkSecurity(cfg NodeConfig) (security, error) {
	var errs []error
	modes := 0
	for _, set := range []bool{len(cfg.Secrets) > 0, cfg.PKI != nil, cfg.TLS != nil, cfg.Insecure} {
		if set {
			modes++
		}
	}
	switch {
	case modes == 0:
		errs = append(errs, errors.New("no peer authentication: set NodeConfig.Secrets (a cluster secret), PKI or TLS, or Insecure to let anyone who reaches the ports read, write and join"))
	case modes > 1:
		errs = append(errs, errors.New("set only one of NodeConfig.Secrets, PKI, TLS and Insecure"))
	}
	if len(cfg.Secrets) > 0 && len(cfg.GossipKey) > 0 {
		errs = append(errs, errors.New("NodeConfig.GossipKey is derived from Secrets; do not set both"))
	}
	buildsGossip := cfg.Membership == nil && len(cfg.Members) == 0
	if (cfg.PKI != nil || cfg.TLS != nil) && buildsGossip && len(cfg.GossipKey) == 0 {
		errs = append(errs, errors.New("gossip would run in the clear beside TLS: set NodeConfig.GossipKey, or use Secrets"))
	}
	if len(errs) > 0 {
		return security{}, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	cluster := cfg.Config.withDefaults().Cluster
	var sec security
	var err error
	switch {
	case len(cfg.Secrets) > 0:
		secrets := auth.Secrets(cfg.Secrets)
		if sec.creds, err = auth.FromSecrets(cluster, cfg.NodeID, secrets); err == nil {
			sec.gossipKeys, err = secrets.GossipKeys(cluster)
		}
	case cfg.PKI != nil:
		sec.creds, err = auth.FromPKI(cluster, cfg.NodeID, *cfg.PKI)
	}
	if err != nil {
		return security{}, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return sec, nil
}

// tcpOptions are the transport options for sec.
func (sec security) tcpOptions(cfg NodeConfig) tcp.Options {
	opts := tcp.Options{TLS: cfg.TLS, Logger: cfg.Logger}
	if sec.creds != nil {
		opts.TLS, opts.Identify = sec.creds.TLSConfig(), sec.creds.PeerNodeID
	}
	return opts
}

// RotateSecrets replaces the cluster secrets of a node opened with
// Secrets, without a restart: the keys that sign its contexts
// (Store.SetSecrets) and, in what Open built, its transport's and gossip's:
// new
// connections of its TCP transport present a certificate from secrets[0]
// and accept any of them, and the node's own connections are redialled; its
// gossip is encrypted with secrets[0] and read with any, and its ring record
// is signed again with a certificate from secrets[0]. A Transport or
// Membership the caller passed is the caller's to rotate. Apply each step to
// every node before the next: [A] → [A, B] → [B, A] → [B] (see package
// auth). secrets is copied.
func (n *Node) RotateSecrets(secrets [][]byte) error {
	if n.cluster == "" {
		return fmt.Errorf("%w: RotateSecrets needs a node opened with NodeConfig.Secrets", ErrInvalidConfig)
	}
	keys, err := auth.Secrets(secrets).GossipKeys(n.cluster)
	if err != nil {
		return fmt.Errorf("dynamo: rotate secrets: %w", err)
	}
	if n.gossip != nil {
		if err := n.gossip.SetSecretKeys(keys); err != nil {
			return fmt.Errorf("dynamo: rotate secrets: %w", err)
		}
	}
	if n.creds != nil {
		if err := n.creds.RotateSecrets(secrets); err != nil {
			return fmt.Errorf("dynamo: rotate secrets: %w", err)
		}
	}
	if n.transport != nil {
		n.transport.Redial()
	}
	if err := n.resign(); err != nil {
		return err
	}
	return n.Store.SetSecrets(secrets)
}

// resign has the gossip Open built sign this node's ring record again with
// the credentials just rotated, so that nodes that trust only the new ones
// take it.
func (n *Node) resign() error {
	if n.gossip == nil {
		return nil
	}
	if err := n.gossip.Resign(); err != nil {
		return fmt.Errorf("dynamo: sign the ring record again: %w", err)
	}
	return nil
}

// RotatePKI replaces the CA pool, certificate and allow-list of a node
// opened with NodeConfig.PKI, for new connections of the TCP transport Open
// built, redials the node's own connections, and signs the node's gossip
// ring record again with the new certificate. See auth.PKI for the steps of
// a CA rotation.
func (n *Node) RotatePKI(pki auth.PKI) error {
	if n.creds == nil || n.cluster != "" {
		return fmt.Errorf("%w: RotatePKI needs a node opened with NodeConfig.PKI", ErrInvalidConfig)
	}
	if err := n.creds.RotatePKI(pki); err != nil {
		return fmt.Errorf("dynamo: rotate PKI: %w", err)
	}
	if n.transport != nil {
		n.transport.Redial()
	}
	return n.resign()
}
