// Certificates: the CA each secret derives, cross-certificates between them, node certificates and their dynamo:// URI SAN.
package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"
)

// uriScheme is the scheme of the URI SAN that names a node.
const uriScheme = "dynamo"

// Node certificates made from a secret are valid for nodeCertLifetime and
// renewed once less than half of it remains; they are dated from
// clockSkew in the past so that a peer whose clock is behind accepts them.
const (
	nodeCertLifetime = 30 * 24 * time.Hour
	clockSkew        = time.Hour
)

// CA certificates are the same bytes on every node: their dates are fixed,
// and Ed25519 signatures are deterministic.
var (
	caNotBefore = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	caNotAfter  = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC) // RFC 5280: no expiry
)

// NodeURI returns the URI SAN that names nodeID of cluster:
// dynamo://<cluster>/<node-id>, the NodeID path-escaped.
func NodeURI(cluster, nodeID string) (*url.URL, error) {
	if err := checkCluster(cluster); err != nil {
		return nil, err
	}
	if nodeID == "" || len(nodeID) > maxNodeIDLen {
		return nil, fmt.Errorf("%w: NodeID is %d bytes; it must be 1 to %d", ErrInvalidIdentity, len(nodeID), maxNodeIDLen)
	}
	return &url.URL{Scheme: uriScheme, Host: cluster, Path: "/" + nodeID}, nil
}

// checkCluster reports whether cluster can be the host of a URI.
func checkCluster(cluster string) error {
	if cluster == "" || len(cluster) > maxClusterLen {
		return fmt.Errorf("%w: cluster name is %d bytes; it must be 1 to %d", ErrInvalidIdentity, len(cluster), maxClusterLen)
	}
	for _, r := range cluster {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return fmt.Errorf("%w: cluster name %q may hold only letters, digits, '.', '-' and '_'", ErrInvalidIdentity, cluster)
		}
	}
	if strings.HasPrefix(cluster, ".") || strings.HasSuffix(cluster, ".") || strings.Contains(cluster, "..") {
		return fmt.Errorf("%w: cluster name %q has an empty dot-separated label", ErrInvalidIdentity, cluster)
	}
	return nil
}

// NodeIDFromCert returns the NodeID that cert names in cluster: the path of
// its one dynamo://<cluster>/ URI SAN. A certificate with none, or with more
// than one, names no node.
func NodeIDFromCert(cert *x509.Certificate, cluster string) (string, error) {
	var id string
	found := 0
	for _, u := range cert.URIs {
		if u.Scheme != uriScheme {
			continue
		}
		if u.Host != cluster || u.User != nil || u.RawQuery != "" || u.Fragment != "" || !strings.HasPrefix(u.Path, "/") {
			return "", fmt.Errorf("%w: certificate names %q, not a node of cluster %q", ErrInvalidIdentity, u.String(), cluster)
		}
		id = u.Path[1:]
		found++
	}
	switch {
	case found == 0:
		return "", fmt.Errorf("%w: certificate has no %s://%s/ URI SAN", ErrInvalidIdentity, uriScheme, cluster)
	case found > 1:
		return "", fmt.Errorf("%w: certificate names %d nodes", ErrInvalidIdentity, found)
	case id == "" || len(id) > maxNodeIDLen:
		return "", fmt.Errorf("%w: certificate's NodeID is %d bytes; it must be 1 to %d", ErrInvalidIdentity, len(id), maxNodeIDLen)
	}
	return id, nil
}

// authority is the CA one secret derives.
type authority struct {
	key  ed25519.PrivateKey
	cert *x509.Certificate // self-signed
}

// newAuthority derives the CA of secret for cluster.
func newAuthority(secret []byte, cluster string) (*authority, error) {
	seed, err := DeriveKey(secret, cluster, InfoCA, ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	key := ed25519.NewKeyFromSeed(seed)
	tmpl := caTemplate(cluster, key.Public().(ed25519.PublicKey))
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("auth: make CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("auth: parse CA certificate: %w", err)
	}
	return &authority{key: key, cert: cert}, nil
}

// caTemplate describes the CA holding pub. Its subject names the key, so
// the CAs of two secrets never share a subject.
func caTemplate(cluster string, pub ed25519.PublicKey) *x509.Certificate {
	sum := sha256.Sum256(pub)
	return &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(sum[:16]),
		Subject:               pkix.Name{Organization: []string{"dynamo cluster " + cluster}, CommonName: "dynamo CA " + hex.EncodeToString(sum[:8])},
		NotBefore:             caNotBefore,
		NotAfter:              caNotAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            1, // room for a cross-certificate
		KeyUsage:              x509.KeyUsageCertSign,
		SubjectKeyId:          sum[:20],
	}
}

// crossCertify returns the DER of a certificate by issuer for subject's
// key, so that a chain through subject's CA leads to issuer's too.
func crossCertify(subject, issuer *authority, cluster string) ([]byte, error) {
	tmpl := caTemplate(cluster, subject.key.Public().(ed25519.PublicKey))
	tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.cert, subject.key.Public(), issuer.key)
	if err != nil {
		return nil, fmt.Errorf("auth: make cross-certificate: %w", err)
	}
	return der, nil
}

// issueNodeCert makes a fresh key for nodeID and a certificate for it by
// ca, followed in the chain by extra (cross-certificates).
func issueNodeCert(ca *authority, cluster, nodeID string, extra [][]byte, now time.Time) (*tls.Certificate, error) {
	uri, err := NodeURI(cluster, nodeID)
	if err != nil {
		return nil, err
	}
	// ECDSA P-256 for the key the handshakes sign with: Go's is the
	// fastest of its signature schemes.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("auth: node key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("auth: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "dynamo node"},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     now.Add(nodeCertLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{uri},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("auth: make node certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("auth: parse node certificate: %w", err)
	}
	chain := append([][]byte{der}, extra...)
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}
