// Credentials: a node's mutual TLS 1.3 identity and trust, from the cluster secret or a PKI, rotated while running.
package auth

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// maxPeerChain bounds the certificates a peer may present.
const maxPeerChain = 8

// PKI is an operator's certificate authority, the FromPKI path.
type PKI struct {
	// CAs are the roots a peer's certificate must chain to. Required. To
	// rotate, add the new CA to every node's pool, then move every node to a
	// certificate from it, then drop the old CA (three RotatePKI steps).
	CAs *x509.CertPool
	// Certificate is this node's chain and key. Its leaf must name this
	// node in a URI SAN dynamo://<cluster>/<node-id>, and be usable for
	// both client and server authentication.
	Certificate tls.Certificate
	// AllowedNodes, when not empty, are the only NodeIDs accepted from
	// peers (this node's own included, if it calls itself).
	AllowedNodes []string
}

// Credentials are one node's TLS identity and the trust it places in peers.
// Create them with FromSecrets or FromPKI; they are safe for concurrent use,
// and the tls.Config from TLSConfig follows every rotation.
type Credentials struct {
	cluster string
	nodeID  string
	now     func() time.Time
	cfg     *tls.Config

	mu    sync.Mutex // serializes rotations and certificate renewal
	state atomic.Pointer[trust]
}

// trust is what Credentials present and accept at one time.
type trust struct {
	cert    *tls.Certificate // this node's chain
	roots   *x509.CertPool
	allowed map[string]bool // nil: any NodeID
	renew   time.Time       // zero: never; else when to issue a new cert

	// From secrets only: the signing CA and the cross-certificates, to
	// renew the node's certificate.
	ca    *authority
	cross [][]byte
}

// FromSecrets makes credentials for nodeID of cluster from secrets: a fresh
// key and certificate signed by the first secret's CA, and trust in the CAs
// of all of them. See the package doc.
func FromSecrets(cluster, nodeID string, secrets Secrets) (*Credentials, error) {
	c := newCredentials(cluster, nodeID)
	if err := c.RotateSecrets(secrets); err != nil {
		return nil, err
	}
	return c, nil
}

// FromPKI makes credentials for nodeID of cluster from an operator's PKI.
func FromPKI(cluster, nodeID string, pki PKI) (*Credentials, error) {
	c := newCredentials(cluster, nodeID)
	if err := c.RotatePKI(pki); err != nil {
		return nil, err
	}
	return c, nil
}

func newCredentials(cluster, nodeID string) *Credentials {
	c := &Credentials{cluster: cluster, nodeID: nodeID, now: time.Now}
	c.cfg = &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetCertificate:       func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.certificate() },
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c.certificate() },
		// Both ends verify in VerifyConnection, against the current roots
		// and by NodeID rather than host name.
		ClientAuth:         tls.RequireAnyClientCert,
		InsecureSkipVerify: true,
		VerifyConnection:   c.verify,
	}
	return c
}

// TLSConfig returns the config to both listen and dial with. It requires a
// certificate of the peer and verifies it on both ends. The config is
// shared: clone it before changing it.
func (c *Credentials) TLSConfig() *tls.Config { return c.cfg }

// NodeID is the node these credentials prove.
func (c *Credentials) NodeID() string { return c.nodeID }

// RotateSecrets replaces the secrets: new handshakes present a certificate
// from the first one and accept peers of any of them.
func (c *Credentials) RotateSecrets(secrets Secrets) error {
	if err := secrets.Validate(); err != nil {
		return err
	}
	if _, err := NodeURI(c.cluster, c.nodeID); err != nil {
		return err
	}
	cas := make([]*authority, len(secrets))
	roots := x509.NewCertPool()
	for i, s := range secrets {
		ca, err := newAuthority(s, c.cluster)
		if err != nil {
			return err
		}
		cas[i] = ca
		roots.AddCert(ca.cert)
	}
	var cross [][]byte
	for _, other := range cas[1:] {
		if other.cert.Equal(cas[0].cert) {
			continue // the same secret twice
		}
		der, err := crossCertify(cas[0], other, c.cluster)
		if err != nil {
			return err
		}
		cross = append(cross, der)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	cert, err := issueNodeCert(cas[0], c.cluster, c.nodeID, cross, now)
	if err != nil {
		return err
	}
	c.state.Store(&trust{cert: cert, roots: roots, renew: now.Add(nodeCertLifetime / 2), ca: cas[0], cross: cross})
	return nil
}

// RotatePKI replaces the CA pool, this node's certificate and the
// allow-list, for new handshakes.
func (c *Credentials) RotatePKI(pki PKI) error {
	if err := checkCluster(c.cluster); err != nil {
		return err
	}
	if pki.CAs == nil {
		return fmt.Errorf("%w: no CA pool", ErrInvalidPKI)
	}
	cert := pki.Certificate
	if len(cert.Certificate) == 0 || cert.PrivateKey == nil {
		return fmt.Errorf("%w: no certificate and key for this node", ErrInvalidPKI)
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("%w: parse the node certificate: %w", ErrInvalidPKI, err)
		}
		cert.Leaf = leaf
	}
	id, err := NodeIDFromCert(leaf, c.cluster)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidPKI, err)
	}
	if id != c.nodeID {
		return fmt.Errorf("%w: the certificate names node %q, not %q", ErrInvalidPKI, id, c.nodeID)
	}
	var allowed map[string]bool
	if len(pki.AllowedNodes) > 0 {
		allowed = make(map[string]bool, len(pki.AllowedNodes))
		for _, n := range pki.AllowedNodes {
			allowed[n] = true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state.Store(&trust{cert: &cert, roots: pki.CAs, allowed: allowed})
	return nil
}

// certificate returns this node's chain, first renewing a certificate made
// from a secret once half its life has passed.
func (c *Credentials) certificate() (*tls.Certificate, error) {
	st := c.state.Load()
	if st.renew.IsZero() || c.now().Before(st.renew) {
		return st.cert, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st = c.state.Load() // a rotation or another renewal may have come first
	now := c.now()
	if st.renew.IsZero() || now.Before(st.renew) {
		return st.cert, nil
	}
	cert, err := issueNodeCert(st.ca, c.cluster, c.nodeID, st.cross, now)
	if err != nil {
		return nil, err
	}
	next := *st
	next.cert, next.renew = cert, now.Add(nodeCertLifetime/2)
	c.state.Store(&next)
	return cert, nil
}

// verify is the VerifyConnection of both ends: the peer's chain must lead to
// a current root, and its leaf name an allowed node of this cluster.
func (c *Credentials) verify(cs tls.ConnectionState) error {
	if cs.Version != tls.VersionTLS13 {
		return fmt.Errorf("%w: TLS version %#x, want 1.3", ErrPeerRejected, cs.Version)
	}
	_, err := c.verifyChain(cs.PeerCertificates, c.now())
	return err
}

// verifyChain checks that certs, a leaf and the intermediates after it,
// lead to a current root as of time at, and that the leaf names an allowed
// node of this cluster; it returns that node's ID.
func (c *Credentials) verifyChain(certs []*x509.Certificate, at time.Time) (string, error) {
	switch {
	case len(certs) == 0:
		return "", fmt.Errorf("%w: no certificate", ErrPeerRejected)
	case len(certs) > maxPeerChain:
		return "", fmt.Errorf("%w: chain of %d certificates, more than %d", ErrPeerRejected, len(certs), maxPeerChain)
	}
	st := c.state.Load()
	opts := x509.VerifyOptions{
		Roots:         st.roots,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	for _, ic := range certs[1:] {
		opts.Intermediates.AddCert(ic)
	}
	leaf := certs[0]
	if _, err := leaf.Verify(opts); err != nil {
		return "", fmt.Errorf("%w: %w", ErrPeerRejected, err)
	}
	id, err := NodeIDFromCert(leaf, c.cluster)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrPeerRejected, err)
	}
	if st.allowed != nil && !st.allowed[id] {
		return "", fmt.Errorf("%w: node %q is not in the allow-list", ErrPeerRejected, id)
	}
	return id, nil
}

// PeerNodeID returns the NodeID the peer proved in a handshake completed
// with TLSConfig, whose VerifyConnection has checked the peer's chain: it
// reads the NodeID from the peer's certificate, and checks it against the
// allow-list again, without verifying the chain a second time. It suits
// tcp.Options.Identify.
func (c *Credentials) PeerNodeID(cs tls.ConnectionState) (string, error) {
	if !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 {
		return "", fmt.Errorf("%w: handshake not complete", ErrPeerRejected)
	}
	id, err := NodeIDFromCert(cs.PeerCertificates[0], c.cluster)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrPeerRejected, err)
	}
	if allowed := c.state.Load().allowed; allowed != nil && !allowed[id] {
		return "", fmt.Errorf("%w: node %q is not in the allow-list", ErrPeerRejected, id)
	}
	return id, nil
}
