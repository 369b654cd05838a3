// Tests of node certificate renewal made from a secret, on a fake clock.
package auth

import (
	"bytes"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCertificate_RenewedAtHalfLife(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	secret := bytes.Repeat([]byte{'s'}, 32)
	a, b := atTime("prod", "a", secret, clock), atTime("prod", "b", secret, clock)

	first, err := a.certificate()
	require.NoError(t, err)
	now = now.Add(nodeCertLifetime/2 - time.Minute)
	same, err := a.certificate()
	require.NoError(t, err)
	require.Same(t, first, same, "renewed before half-life")

	now = now.Add(2 * time.Minute)
	renewed, err := a.certificate()
	require.NoError(t, err)
	require.NotSame(t, first, renewed)
	require.True(t, renewed.Leaf.NotAfter.After(first.Leaf.NotAfter))

	// Past the first certificate's end, only the renewed one is accepted.
	now = first.Leaf.NotAfter.Add(time.Minute)
	_, err = b.verifyChain([]*x509.Certificate{first.Leaf}, now)
	require.ErrorIs(t, err, ErrPeerRejected)
	id, err := b.verifyChain([]*x509.Certificate{renewed.Leaf}, now)
	require.NoError(t, err)
	require.Equal(t, "a", id)
}

// atTime makes credentials from secret on clock.
func atTime(cluster, id string, secret []byte, clock func() time.Time) *Credentials {
	c := newCredentials(cluster, id)
	c.now = clock
	if err := c.RotateSecrets(Secrets{secret}); err != nil {
		panic(err)
	}
	return c
}
