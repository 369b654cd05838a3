// Tests of key derivation from cluster secrets and of the dynamo:// node names in certificates.
package auth_test

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/x509"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"pgregory.net/rapid"

	"github.com/dynamo-kv/dynamo/auth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	secretA = bytes.Repeat([]byte{'a'}, 32)
	secretB = bytes.Repeat([]byte{'b'}, 32)
	secretC = bytes.Repeat([]byte{'c'}, 32)
)

func TestDeriveKey_IsHKDFWithClusterSaltAndPurpose(t *testing.T) {
	for _, info := range []string{auth.InfoGossipKey, auth.InfoCA, auth.InfoContextMAC} {
		want, err := hkdf.Key(sha256.New, secretA, []byte("prod"), info, 32)
		require.NoError(t, err)
		got, err := auth.DeriveKey(secretA, "prod", info, 32)
		require.NoError(t, err)
		require.Equal(t, want, got, info)
	}
	require.Equal(t, "dynamo/gossip-key/v1", auth.InfoGossipKey)
	require.Equal(t, "dynamo/ca/v1", auth.InfoCA)
	require.Equal(t, "dynamo/context-mac/v1", auth.InfoContextMAC)
}

func TestSecrets_KeysDifferByPurposeClusterAndSecret(t *testing.T) {
	s := auth.Secrets{secretB, secretA}
	gossip, err := s.GossipKeys("prod")
	require.NoError(t, err)
	mac, err := s.ContextMACKeys("prod")
	require.NoError(t, err)
	other, err := s.GossipKeys("staging")
	require.NoError(t, err)
	require.Len(t, gossip, 2)
	seen := map[string]bool{}
	for _, k := range [][]byte{gossip[0], gossip[1], mac[0], mac[1], other[0], other[1]} {
		require.Len(t, k, 32)
		require.False(t, seen[string(k)], "two purposes, clusters or secrets gave the same key")
		seen[string(k)] = true
	}
	// The order follows the secrets: the first key is the first secret's.
	one, err := auth.Secrets{secretA}.GossipKeys("prod")
	require.NoError(t, err)
	require.Equal(t, one[0], gossip[1])
}

func TestSecrets_Validate(t *testing.T) {
	require.NoError(t, auth.Secrets{secretA}.Validate())
	err := auth.Secrets{}.Validate()
	require.ErrorIs(t, err, auth.ErrInvalidSecret)
	require.ErrorContains(t, err, "no secret")

	err = auth.Secrets{make([]byte, 15), secretA, make([]byte, auth.MaxSecretSize+1)}.Validate()
	require.ErrorIs(t, err, auth.ErrInvalidSecret)
	require.ErrorContains(t, err, "secret 0 is 15 bytes")
	require.ErrorContains(t, err, "secret 2 is 1025 bytes")

	_, err = auth.Secrets{[]byte("short")}.GossipKeys("prod")
	require.ErrorIs(t, err, auth.ErrInvalidSecret)
	_, err = auth.DeriveKey(nil, "prod", auth.InfoCA, 32)
	require.ErrorIs(t, err, auth.ErrInvalidSecret)
}

func TestNodeURI_RoundTripsThroughCertificateParsing(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cluster := rapid.StringMatching(`[a-zA-Z0-9_-]{1,20}(\.[a-z0-9]{1,5}){0,2}`).Draw(t, "cluster")
		id := rapid.StringN(1, 64, -1).Draw(t, "id")
		u, err := auth.NodeURI(cluster, id)
		if err != nil {
			t.Fatalf("NodeURI(%q, %q): %v", cluster, id, err)
		}
		// What a peer sees: the URI as text, parsed back as x509 does.
		parsed, err := url.Parse(u.String())
		if err != nil {
			t.Fatalf("parse %q: %v", u, err)
		}
		got, err := auth.NodeIDFromCert(&x509.Certificate{URIs: []*url.URL{parsed}}, cluster)
		if err != nil || got != id {
			t.Fatalf("NodeIDFromCert = %q, %v; want %q", got, err, id)
		}
	})
}

func TestNodeURI_RejectsNamesThatCannotBeAHost(t *testing.T) {
	for _, cluster := range []string{"", "my cluster", "a/b", "a:1", ".x", "x.", "a..b", "é", strings.Repeat("x", 254)} {
		_, err := auth.NodeURI(cluster, "n1")
		require.ErrorIs(t, err, auth.ErrInvalidIdentity, "cluster %q", cluster)
	}
	_, err := auth.NodeURI("prod", "")
	require.ErrorIs(t, err, auth.ErrInvalidIdentity)
	_, err = auth.NodeURI("prod", strings.Repeat("x", 1025))
	require.ErrorIs(t, err, auth.ErrInvalidIdentity)
	u, err := auth.NodeURI("prod.example", "node-1")
	require.NoError(t, err)
	require.Equal(t, "dynamo://prod.example/node-1", u.String())
}

func TestNodeIDFromCert(t *testing.T) {
	uri := func(s string) *url.URL {
		u, err := url.Parse(s)
		require.NoError(t, err)
		return u
	}
	tests := map[string]struct {
		uris []string
		want string // "" means an error
	}{
		"one node":                {[]string{"dynamo://prod/n1"}, "n1"},
		"other schemes ignored":   {[]string{"spiffe://prod/x", "dynamo://prod/n1"}, "n1"},
		"escaped":                 {[]string{"dynamo://prod/a%2Fb%20c"}, "a/b c"},
		"none":                    {[]string{"spiffe://prod/n1"}, ""},
		"other cluster":           {[]string{"dynamo://staging/n1"}, ""},
		"two nodes":               {[]string{"dynamo://prod/n1", "dynamo://prod/n2"}, ""},
		"empty id":                {[]string{"dynamo://prod/"}, ""},
		"no path":                 {[]string{"dynamo://prod"}, ""},
		"query":                   {[]string{"dynamo://prod/n1?x=1"}, ""},
		"user info":               {[]string{"dynamo://u@prod/n1"}, ""},
		"port":                    {[]string{"dynamo://prod:1/n1"}, ""},
		"same node, other clusts": {[]string{"dynamo://prod/n1", "dynamo://x/n1"}, ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c := &x509.Certificate{}
			for _, s := range tt.uris {
				c.URIs = append(c.URIs, uri(s))
			}
			got, err := auth.NodeIDFromCert(c, "prod")
			if tt.want == "" {
				require.ErrorIs(t, err, auth.ErrInvalidIdentity)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
