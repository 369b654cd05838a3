// Tests of the PKI path: an operator's CA, NodeIDs in its certificates, the allow-list and CA rotation.
package auth_test

import (
	"crypto/tls"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/auth"
	"github.com/dynamo-kv/dynamo/auth/authtest"
)

// operatorCA is a CA as an operator would run one.
type operatorCA struct{ *authtest.CA }

func newOperatorCA(t *testing.T, name string) operatorCA {
	t.Helper()
	ca, err := authtest.NewCA(name)
	require.NoError(t, err)
	return operatorCA{ca}
}

// issue returns a certificate for the given URI SANs.
func (ca operatorCA) issue(t *testing.T, uris ...string) tls.Certificate {
	t.Helper()
	cert, err := ca.IssueURIs(uris...)
	require.NoError(t, err)
	return cert
}

func fromPKI(t *testing.T, id string, pki auth.PKI) *auth.Credentials {
	t.Helper()
	c, err := auth.FromPKI("prod", id, pki)
	require.NoError(t, err)
	return c
}

func TestFromPKI_NodeIDsBothWays(t *testing.T) {
	ca := newOperatorCA(t, "ops CA")
	pool := certPool(ca.Cert)
	a := fromPKI(t, "a", auth.PKI{CAs: pool, Certificate: ca.issue(t, "dynamo://prod/a")})
	b := fromPKI(t, "b", auth.PKI{CAs: pool, Certificate: ca.issue(t, "dynamo://prod/b")})
	connect(t, a, b)
	connect(t, b, a)
}

func TestFromPKI_RefusesWrongCertificates(t *testing.T) {
	ca := newOperatorCA(t, "ops CA")
	pool := certPool(ca.Cert)
	tests := map[string]auth.PKI{
		"no pool":              {Certificate: ca.issue(t, "dynamo://prod/a")},
		"no certificate":       {CAs: pool},
		"another node's":       {CAs: pool, Certificate: ca.issue(t, "dynamo://prod/b")},
		"another cluster's":    {CAs: pool, Certificate: ca.issue(t, "dynamo://staging/a")},
		"no node name":         {CAs: pool, Certificate: ca.issue(t)},
		"garbage certificate":  {CAs: pool, Certificate: tls.Certificate{Certificate: [][]byte{{1, 2, 3}}, PrivateKey: ca.issue(t, "dynamo://prod/a").PrivateKey}},
		"two names for a node": {CAs: pool, Certificate: ca.issue(t, "dynamo://prod/a", "dynamo://prod/c")},
	}
	for name, pki := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := auth.FromPKI("prod", "a", pki)
			require.ErrorIs(t, err, auth.ErrInvalidPKI)
		})
	}
}

func TestFromPKI_PeerMustNameANodeOfThisCluster(t *testing.T) {
	ca := newOperatorCA(t, "ops CA")
	pool := certPool(ca.Cert)
	a := fromPKI(t, "a", auth.PKI{CAs: pool, Certificate: ca.issue(t, "dynamo://prod/a")})
	// Same CA, but the peer's certificate names a node of another cluster.
	other, err := auth.FromPKI("staging", "x", auth.PKI{CAs: pool, Certificate: ca.issue(t, "dynamo://staging/x")})
	require.NoError(t, err)
	refused(t, a, other)
	refused(t, other, a)
	// A certificate from a CA a does not trust.
	rogue := newOperatorCA(t, "rogue CA")
	r := fromPKI(t, "r", auth.PKI{CAs: certPool(rogue.Cert, ca.Cert), Certificate: rogue.issue(t, "dynamo://prod/r")})
	refused(t, a, r)
	refused(t, r, a)
}

func TestFromPKI_AllowList(t *testing.T) {
	ca := newOperatorCA(t, "ops CA")
	pool := certPool(ca.Cert)
	allow := []string{"a", "b"}
	a := fromPKI(t, "a", auth.PKI{CAs: pool, Certificate: ca.issue(t, "dynamo://prod/a"), AllowedNodes: allow})
	b := fromPKI(t, "b", auth.PKI{CAs: pool, Certificate: ca.issue(t, "dynamo://prod/b")})
	c := fromPKI(t, "c", auth.PKI{CAs: pool, Certificate: ca.issue(t, "dynamo://prod/c")})
	connect(t, a, b)
	connect(t, b, a)
	refused(t, a, c)
	srv, _ := handshake(t, a.TLSConfig(), c.TLSConfig(), a.PeerNodeID, c.PeerNodeID)
	require.ErrorIs(t, srv.err, auth.ErrPeerRejected)
	require.ErrorContains(t, srv.err, `node "c" is not in the allow-list`)
	connect(t, b, c) // b has no allow-list
}

// Rotation of the operator's CA: add the new CA everywhere, move each node
// to a certificate from it, drop the old CA. Every pair of neighbouring
// steps connects.
func TestRotatePKI_CA(t *testing.T) {
	oldCA, newCA := newOperatorCA(t, "old CA"), newOperatorCA(t, "new CA")
	steps := []auth.PKI{
		{CAs: certPool(oldCA.Cert), Certificate: oldCA.issue(t, "dynamo://prod/n")},
		{CAs: certPool(oldCA.Cert, newCA.Cert), Certificate: oldCA.issue(t, "dynamo://prod/n")},
		{CAs: certPool(oldCA.Cert, newCA.Cert), Certificate: newCA.issue(t, "dynamo://prod/n")},
		{CAs: certPool(newCA.Cert), Certificate: newCA.issue(t, "dynamo://prod/n")},
	}
	creds := make([]*auth.Credentials, len(steps))
	for i, s := range steps {
		creds[i] = fromPKI(t, "n", s)
	}
	for i := range len(steps) - 1 {
		connect(t, creds[i], creds[i+1])
		connect(t, creds[i+1], creds[i])
	}
	refused(t, creds[0], creds[3])

	live := fromPKI(t, "n", steps[0])
	for i, s := range steps {
		require.NoError(t, live.RotatePKI(s))
		connect(t, live, creds[i])
	}
	refused(t, live, creds[0])
	require.ErrorIs(t, live.RotatePKI(auth.PKI{}), auth.ErrInvalidPKI)
	connect(t, live, creds[3])
}
