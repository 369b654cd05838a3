// Package auth holds a dynamo cluster's root of trust: keys derived from a
// cluster secret, and the mutual TLS 1.3 credentials nodes prove their NodeID
// with, from the secret or from an operator's PKI.
//
// # Basics
//
// Every node of a cluster is given the same Secrets. From each secret, HKDF-SHA256
// (salt: the cluster name) derives one key per purpose:
//
//   - "dynamo/gossip-key/v1": a 32-byte memberlist keyring key (GossipKeys);
//   - "dynamo/ca/v1": the seed of an Ed25519 certificate authority;
//   - "dynamo/context-mac/v1": a 32-byte key for MACs on causal contexts
//     (ContextMACKeys).
//
// At start-up a node makes a fresh ECDSA P-256 key and a certificate for it,
// signed by the CA of the first secret, naming the node in a URI SAN
// dynamo://<cluster>/<node-id>. The data port then runs ordinary mutual TLS
// 1.3: both ends check, in tls.Config.VerifyConnection, that the peer's chain
// leads to the CA of one of the secrets and that it names a node of this
// cluster. Credentials.PeerNodeID tells which node.
//
//	creds, err := auth.FromSecrets("prod", "node-a", auth.Secrets{secret})
//	cfg := creds.TLSConfig() // listen and dial with it
//
// With a PKI instead (FromPKI), the operator issues each node's certificate
// with the same URI SAN and hands every node the CA pool, and optionally an
// allow-list of NodeIDs.
//
// # Rotation
//
// Secrets is a list: the first signs, all verify. A node's certificate from
// the first secret also carries, for each other secret, a cross-certificate
// by that secret's CA, so a node holding [B, A] is accepted by nodes that still
// hold only [A], and accepts them. Memberlist's keyring is stricter: a node
// encrypts gossip with the first key only, so nodes holding only A cannot
// read a node that holds [B, A]. Rotating both without a failed call thus
// takes three steps, each applied to every node before the next starts:
// [A] → [A, B] (B installed) → [B, A] (B used) → [B] (A removed).
// RotateSecrets applies a step to a running node.
//
// # Caveats
//
//   - HKDF does not stretch a weak secret: use at least 32 random bytes
//     (for instance `openssl rand -base64 32`). Secrets under MinSecretSize
//     bytes are refused.
//   - The cluster name becomes the host of a URI: it must be letters,
//     digits, '.', '-' and '_' only.
//   - Rotation changes what new connections present and accept; connections
//     already open stay open until they close.
package auth

import (
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
)

// HKDF info strings, one per purpose; the salt is the cluster name.
const (
	InfoGossipKey  = "dynamo/gossip-key/v1"
	InfoCA         = "dynamo/ca/v1"
	InfoContextMAC = "dynamo/context-mac/v1"
)

// Bounds on a secret's length in bytes.
const (
	MinSecretSize = 16
	MaxSecretSize = 1024
)

// Bounds on the identities that go into certificates.
const (
	maxClusterLen = 253
	maxNodeIDLen  = 1024
)

var (
	// ErrInvalidSecret is returned when Secrets are missing or a secret's
	// length is out of bounds.
	ErrInvalidSecret = errors.New("auth: invalid secret")
	// ErrInvalidIdentity is returned when a cluster name or NodeID cannot
	// go into a certificate, or a certificate does not name this node.
	ErrInvalidIdentity = errors.New("auth: invalid identity")
	// ErrInvalidPKI is returned by FromPKI and RotatePKI for a PKI that
	// lacks a CA pool or a usable certificate.
	ErrInvalidPKI = errors.New("auth: invalid PKI")
	// ErrPeerRejected is wrapped by the error that fails a TLS handshake
	// with a peer whose certificate does not chain to a trusted CA, names no
	// node of this cluster, or names one outside the allow-list.
	ErrPeerRejected = errors.New("auth: peer rejected")
)

// Secrets are a cluster's shared secrets, each the root of its keys. The
// first signs and encrypts; all verify and decrypt, so that a secret can be
// rotated without downtime (see the package doc). The byte slices are only
// read; the caller keeps ownership.
type Secrets [][]byte

// Validate reports every problem with s at once, wrapped in ErrInvalidSecret.
func (s Secrets) Validate() error {
	if len(s) == 0 {
		return fmt.Errorf("%w: no secret given", ErrInvalidSecret)
	}
	var errs []error
	for i, k := range s {
		if len(k) < MinSecretSize || len(k) > MaxSecretSize {
			errs = append(errs, fmt.Errorf("secret %d is %d bytes; it must be %d to %d", i, len(k), MinSecretSize, MaxSecretSize))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidSecret, errors.Join(errs...))
	}
	return nil
}

// DeriveKey returns n bytes derived from secret by HKDF-SHA256 with the
// cluster name as salt and info naming the purpose (one of the Info
// constants). The result is owned by the caller.
func DeriveKey(secret []byte, cluster, info string, n int) ([]byte, error) {
	if len(secret) < MinSecretSize || len(secret) > MaxSecretSize {
		return nil, fmt.Errorf("%w: secret is %d bytes; it must be %d to %d", ErrInvalidSecret, len(secret), MinSecretSize, MaxSecretSize)
	}
	k, err := hkdf.Key(sha256.New, secret, []byte(cluster), info, n)
	if err != nil {
		return nil, fmt.Errorf("auth: derive %s: %w", info, err)
	}
	return k, nil
}

// GossipKeys returns one 32-byte memberlist keyring key per secret, in the
// same order: the first is the one to encrypt with.
func (s Secrets) GossipKeys(cluster string) ([][]byte, error) {
	return s.derive(cluster, InfoGossipKey, 32)
}

// ContextMACKeys returns one 32-byte key per secret for MACs on causal
// contexts, in the same order: the first is the one to sign with.
func (s Secrets) ContextMACKeys(cluster string) ([][]byte, error) {
	return s.derive(cluster, InfoContextMAC, 32)
}

func (s Secrets) derive(cluster, info string, n int) ([][]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	keys := make([][]byte, len(s))
	for i, secret := range s {
		k, err := DeriveKey(secret, cluster, info, n)
		if err != nil {
			return nil, err
		}
		keys[i] = k
	}
	return keys, nil
}
