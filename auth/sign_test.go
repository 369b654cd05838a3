// Tests of Credentials.Sign and Verify: a node's signature names it, and nothing else passes for it.
package auth_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/auth"
)

var (
	signSecret  = bytes.Repeat([]byte{'s'}, 32)
	otherSecret = bytes.Repeat([]byte{'o'}, 32)
)

func TestSign_VerifyNamesTheSigner(t *testing.T) {
	a, b := fromSecrets(t, "a", signSecret), fromSecrets(t, "b", signSecret)
	msg := []byte("ring record of a")
	sig, chain, err := a.Sign(msg)
	require.NoError(t, err)
	now := time.Now()
	id, err := b.Verify(msg, sig, chain, now)
	require.NoError(t, err)
	require.Equal(t, "a", id)

	outsider := fromSecrets(t, "a", otherSecret)
	osig, ochain, err := outsider.Sign(msg)
	require.NoError(t, err)
	long := bytes.Repeat([]byte{1}, auth.MaxCertSize+1)
	for name, tc := range map[string]struct {
		msg, sig []byte
		chain    [][]byte
		at       time.Time
	}{
		"changed message":             {[]byte("ring record of b"), sig, chain, now},
		"changed signature":           {msg, append(bytes.Clone(sig[:len(sig)-1]), sig[len(sig)-1]^1), chain, now},
		"another cluster secret":      {msg, osig, ochain, now},
		"before the certificate":      {msg, sig, chain, now.Add(-48 * time.Hour)},
		"no signature":                {msg, nil, chain, now},
		"signature too long":          {msg, make([]byte, auth.MaxSignatureSize+1), chain, now},
		"no chain":                    {msg, sig, nil, now},
		"certificate too long":        {msg, sig, [][]byte{long}, now},
		"nine certificates":           {msg, sig, [][]byte{chain[0], chain[0], chain[0], chain[0], chain[0], chain[0], chain[0], chain[0], chain[0]}, now},
		"garbage certificate":         {msg, sig, [][]byte{{0x30, 0x03, 0x02, 0x01, 0x01}}, now},
		"b's chain for a's signature": {msg, sig, chainOf(t, b), now},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := b.Verify(tc.msg, tc.sig, tc.chain, tc.at)
			require.ErrorIs(t, err, auth.ErrBadSignature)
		})
	}
}

// chainOf returns the chain c signs with.
func chainOf(t *testing.T, c *auth.Credentials) [][]byte {
	_, chain, err := c.Sign(nil)
	require.NoError(t, err)
	return chain
}

// A signature outlives the certificate's renewal: it is checked against
// the chain as it was when signed.
func TestSign_VerifiedAtSigningTime(t *testing.T) {
	a, b := fromSecrets(t, "a", signSecret), fromSecrets(t, "b", signSecret)
	sig, chain, err := a.Sign([]byte("m"))
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(chain[0])
	require.NoError(t, err)
	_, err = b.Verify([]byte("m"), sig, chain, leaf.NotAfter.Add(time.Hour))
	require.ErrorIs(t, err, auth.ErrBadSignature, "after the certificate expired")
	id, err := b.Verify([]byte("m"), sig, chain, leaf.NotAfter.Add(-time.Minute))
	require.NoError(t, err)
	require.Equal(t, "a", id)
}

// With a PKI, every key type an operator may issue signs, and the
// allow-list applies to signatures as to handshakes.
func TestSign_PKIKeyTypesAndAllowList(t *testing.T) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sign test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	issue := func(id string, key crypto.Signer) tls.Certificate {
		uri, err := auth.NodeURI("prod", id)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: id},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			URIs:        []*url.URL{uri},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
		require.NoError(t, err)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	verifier := fromPKI(t, "v", auth.PKI{CAs: pool, Certificate: issue("v", ecKey)})
	strict := fromPKI(t, "v", auth.PKI{CAs: pool, Certificate: issue("v", ecKey), AllowedNodes: []string{"v"}})
	for id, key := range map[string]crypto.Signer{"ed": edKey, "rsa": rsaKey, "ec": ecKey} {
		t.Run(id, func(t *testing.T) {
			signer := fromPKI(t, id, auth.PKI{CAs: pool, Certificate: issue(id, key)})
			sig, chain, err := signer.Sign([]byte("m"))
			require.NoError(t, err)
			got, err := verifier.Verify([]byte("m"), sig, chain, time.Now())
			require.NoError(t, err)
			require.Equal(t, id, got)
			_, err = verifier.Verify([]byte("n"), sig, chain, time.Now())
			require.ErrorIs(t, err, auth.ErrBadSignature)
			_, err = strict.Verify([]byte("m"), sig, chain, time.Now())
			require.ErrorIs(t, err, auth.ErrBadSignature, "not in the allow-list")
		})
	}
}
