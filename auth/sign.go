// Signatures by a node's key, checked against its certificate chain: how a node proves it wrote a gossiped ring record (§4.8).
package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// signContext opens every message Sign signs, so that a signature made here
// can never pass for one made for another purpose (TLS 1.3 signs its own,
// different context).
const signContext = "dynamo signed message v1\x00"

// Bounds on what Verify parses.
const (
	// MaxCertSize bounds one DER certificate of a chain given to Verify.
	MaxCertSize = 16 << 10
	// MaxSignatureSize bounds a signature given to Verify (RSA-8192 takes
	// 1 KiB).
	MaxSignatureSize = 1 << 10
)

// ErrBadSignature is wrapped by Verify's error when the signature, or the
// chain that should vouch for it, does not check out.
var ErrBadSignature = errors.New("auth: bad signature")

// Sign signs msg with the key of this node's current certificate and
// returns the signature and that certificate's chain (DER, leaf first) for
// Verify. msg is only read. The chain is shared: do not modify it.
func (c *Credentials) Sign(msg []byte) (sig []byte, chain [][]byte, err error) {
	cert, err := c.certificate()
	if err != nil {
		return nil, nil, err
	}
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("auth: sign: the node's key (%T) cannot sign", cert.PrivateKey)
	}
	data := signedData(msg)
	switch signer.Public().(type) {
	case ed25519.PublicKey:
		sig, err = signer.Sign(rand.Reader, data, crypto.Hash(0))
	case *ecdsa.PublicKey, *rsa.PublicKey:
		sum := sha256.Sum256(data)
		sig, err = signer.Sign(rand.Reader, sum[:], crypto.SHA256)
	default:
		return nil, nil, fmt.Errorf("auth: sign: unsupported key type %T", signer.Public())
	}
	if err != nil {
		return nil, nil, fmt.Errorf("auth: sign: %w", err)
	}
	return sig, cert.Certificate, nil
}

// Verify checks that sig is a signature of msg made by Sign with the key of
// chain's leaf, that the chain led to a trusted root at time at (when the
// message was signed, so that a signature outlives the certificate's
// renewal), and that the leaf names an allowed node of this cluster. It
// returns that node's ID, or an error wrapping ErrBadSignature. msg, sig
// and chain are only read; they are bounded (MaxSignatureSize, MaxCertSize
// and at most 8 certificates) before anything is parsed.
func (c *Credentials) Verify(msg, sig []byte, chain [][]byte, at time.Time) (string, error) {
	switch {
	case len(sig) == 0 || len(sig) > MaxSignatureSize:
		return "", fmt.Errorf("%w: signature of %d bytes", ErrBadSignature, len(sig))
	case len(chain) == 0 || len(chain) > maxPeerChain:
		return "", fmt.Errorf("%w: chain of %d certificates, want 1 to %d", ErrBadSignature, len(chain), maxPeerChain)
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		if len(der) > MaxCertSize {
			return "", fmt.Errorf("%w: certificate %d is %d bytes, more than %d", ErrBadSignature, i, len(der), MaxCertSize)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return "", fmt.Errorf("%w: certificate %d: %w", ErrBadSignature, i, err)
		}
		certs[i] = cert
	}
	id, err := c.verifyChain(certs, at)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	leaf := certs[0]
	var alg x509.SignatureAlgorithm
	switch leaf.PublicKeyAlgorithm {
	case x509.Ed25519:
		alg = x509.PureEd25519
	case x509.ECDSA:
		alg = x509.ECDSAWithSHA256
	case x509.RSA:
		alg = x509.SHA256WithRSA
	default:
		return "", fmt.Errorf("%w: unsupported key algorithm %v", ErrBadSignature, leaf.PublicKeyAlgorithm)
	}
	if err := leaf.CheckSignature(alg, signedData(msg), sig); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return id, nil
}

// signedData is what Sign signs for msg.
func signedData(msg []byte) []byte {
	return append([]byte(signContext), msg...)
}
