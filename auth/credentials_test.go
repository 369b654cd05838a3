// Tests of mutual TLS between Credentials over 127.0.0.1: NodeIDs proved both ways, strangers refused, rotation.
package auth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/auth"
)

// result is one end's view of a handshake.
type result struct {
	peer string // the NodeID the other end proved
	err  error
}

// handshake connects a client to a server over 127.0.0.1 with their
// configs and returns what each end saw.
func handshake(t *testing.T, server, client *tls.Config, sid, cid func(tls.ConnectionState) (string, error)) (srv, cli result) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan result, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer nc.Close()
		tc := tls.Server(nc, server)
		if err := tc.HandshakeContext(ctx); err != nil {
			done <- result{err: err}
			return
		}
		id, err := sid(tc.ConnectionState())
		if err == nil {
			// In TLS 1.3 the client finishes before the server has checked
			// its certificate: this byte tells it the server accepted it.
			_, err = tc.Write([]byte{1})
		}
		done <- result{peer: id, err: err}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer nc.Close()
	tc := tls.Client(nc, client)
	if err := tc.HandshakeContext(ctx); err != nil {
		cli.err = err
	} else if cli.peer, cli.err = cid(tc.ConnectionState()); cli.err == nil {
		require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
		_, cli.err = tc.Read(make([]byte, 1))
	}
	srv = <-done
	return srv, cli
}

// connect handshakes two credentials and requires both ends to see each
// other's NodeID.
func connect(t *testing.T, server, client *auth.Credentials) {
	t.Helper()
	srv, cli := handshake(t, server.TLSConfig(), client.TLSConfig(), server.PeerNodeID, client.PeerNodeID)
	require.NoError(t, srv.err, "server %s accepting %s", server.NodeID(), client.NodeID())
	require.NoError(t, cli.err, "client %s dialling %s", client.NodeID(), server.NodeID())
	require.Equal(t, client.NodeID(), srv.peer)
	require.Equal(t, server.NodeID(), cli.peer)
}

// refused requires the handshake to fail on both ends.
func refused(t *testing.T, server, client *auth.Credentials) {
	t.Helper()
	srv, cli := handshake(t, server.TLSConfig(), client.TLSConfig(), server.PeerNodeID, client.PeerNodeID)
	require.Error(t, srv.err, "server %s accepted %s", server.NodeID(), client.NodeID())
	require.Error(t, cli.err, "client %s reached %s", client.NodeID(), server.NodeID())
}

func fromSecrets(t *testing.T, id string, secrets ...[]byte) *auth.Credentials {
	t.Helper()
	c, err := auth.FromSecrets("prod", id, secrets)
	require.NoError(t, err)
	return c
}

func TestFromSecrets_BothEndsLearnEachOthersNodeID(t *testing.T) {
	a, b := fromSecrets(t, "node-a", secretA), fromSecrets(t, "node/b ?", secretA)
	connect(t, a, b)
	connect(t, b, a)
	connect(t, a, a) // a node calling itself
}

func TestFromSecrets_ConfigIsTLS13Mutual(t *testing.T) {
	cfg := fromSecrets(t, "n1", secretA).TLSConfig()
	require.Equal(t, uint16(tls.VersionTLS13), cfg.MinVersion)
	require.Equal(t, tls.RequireAnyClientCert, cfg.ClientAuth, "a client without a certificate must be refused")
	require.NotNil(t, cfg.VerifyConnection)
}

func TestFromSecrets_RefusesOtherSecretsAndClusters(t *testing.T) {
	a := fromSecrets(t, "n1", secretA)
	refused(t, a, fromSecrets(t, "n2", secretB))
	refused(t, fromSecrets(t, "n2", secretB), a)

	other, err := auth.FromSecrets("staging", "n2", auth.Secrets{secretA})
	require.NoError(t, err)
	refused(t, a, other)
	refused(t, other, a)
}

func TestFromSecrets_RefusesClientWithoutCertificate(t *testing.T) {
	a := fromSecrets(t, "n1", secretA)
	anon := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	srv, _ := handshake(t, a.TLSConfig(), anon, a.PeerNodeID, func(tls.ConnectionState) (string, error) { return "", nil })
	require.Error(t, srv.err)
}

func TestFromSecrets_ServerRejectsForeignClient(t *testing.T) {
	// The client accepts anything, so only the server's check can fail.
	a := fromSecrets(t, "n1", secretA)
	stranger := fromSecrets(t, "n2", secretB).TLSConfig().Clone()
	stranger.VerifyConnection = nil
	srv, _ := handshake(t, a.TLSConfig(), stranger, a.PeerNodeID, func(tls.ConnectionState) (string, error) { return "", nil })
	require.ErrorIs(t, srv.err, auth.ErrPeerRejected)
}

func TestFromSecrets_ClientRejectsForeignServerWithErrPeerRejected(t *testing.T) {
	a := fromSecrets(t, "n1", secretA)
	stranger := fromSecrets(t, "n2", secretB).TLSConfig().Clone()
	stranger.VerifyConnection = nil
	_, cli := handshake(t, stranger, a.TLSConfig(), func(tls.ConnectionState) (string, error) { return "", nil }, a.PeerNodeID)
	require.ErrorIs(t, cli.err, auth.ErrPeerRejected)
}

func TestFromSecrets_InvalidInput(t *testing.T) {
	_, err := auth.FromSecrets("prod", "n1", nil)
	require.ErrorIs(t, err, auth.ErrInvalidSecret)
	_, err = auth.FromSecrets("my cluster", "n1", auth.Secrets{secretA})
	require.ErrorIs(t, err, auth.ErrInvalidIdentity)
	_, err = auth.FromSecrets("prod", "", auth.Secrets{secretA})
	require.ErrorIs(t, err, auth.ErrInvalidIdentity)
}

// Rotation: A → [B, A] → [B] with every pair that coexists in a rolling
// change able to connect, both ways.
func TestRotateSecrets_TwoSteps(t *testing.T) {
	old := fromSecrets(t, "old", secretA)
	mid := fromSecrets(t, "mid", secretB, secretA)
	mid2 := fromSecrets(t, "mid2", secretB, secretA)
	next := fromSecrets(t, "new", secretB)
	for _, pair := range [][2]*auth.Credentials{{old, mid}, {mid, mid2}, {mid, next}} {
		connect(t, pair[0], pair[1])
		connect(t, pair[1], pair[0])
	}
	// A and B alone never met: the rotation needs every node at [B, A]
	// before any drops A.
	refused(t, old, next)

	// The same steps on one live Credentials.
	live := fromSecrets(t, "live", secretA)
	connect(t, live, old)
	require.NoError(t, live.RotateSecrets(auth.Secrets{secretB, secretA}))
	connect(t, live, old)
	connect(t, next, live)
	require.NoError(t, live.RotateSecrets(auth.Secrets{secretB}))
	connect(t, live, next)
	refused(t, live, old)
}

func TestRotateSecrets_InstallFirst(t *testing.T) {
	// [A] → [A, B] → [B, A] → [B], memberlist's order, also works for TLS.
	a, ab, ba, b := fromSecrets(t, "a", secretA), fromSecrets(t, "ab", secretA, secretB),
		fromSecrets(t, "ba", secretB, secretA), fromSecrets(t, "b", secretB)
	for _, pair := range [][2]*auth.Credentials{{a, ab}, {ab, ba}, {ba, b}, {a, ba}, {ab, b}} {
		connect(t, pair[0], pair[1])
		connect(t, pair[1], pair[0])
	}
	// Three secrets at once: any of them verifies.
	abc := fromSecrets(t, "abc", secretC, secretB, secretA)
	connect(t, abc, a)
	connect(t, b, abc)
}

func TestRotateSecrets_InvalidLeavesCredentialsUnchanged(t *testing.T) {
	a := fromSecrets(t, "a", secretA)
	require.ErrorIs(t, a.RotateSecrets(auth.Secrets{[]byte("short")}), auth.ErrInvalidSecret)
	connect(t, a, fromSecrets(t, "b", secretA))
}

func TestCredentials_RejectsOverlongChain(t *testing.T) {
	a := fromSecrets(t, "a", secretA)
	long := fromSecrets(t, "b", secretA).TLSConfig().Clone()
	cert, err := long.GetCertificate(nil)
	require.NoError(t, err)
	padded := *cert
	for range 8 {
		padded.Certificate = append(padded.Certificate, cert.Certificate[0])
	}
	long.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &padded, nil }
	srv, cli := handshake(t, long, a.TLSConfig(), func(tls.ConnectionState) (string, error) { return "", nil }, a.PeerNodeID)
	_ = srv
	require.ErrorIs(t, cli.err, auth.ErrPeerRejected)
	require.ErrorContains(t, cli.err, "chain of 9 certificates")
}

func TestPeerNodeID_NeedsCompleteHandshake(t *testing.T) {
	a := fromSecrets(t, "a", secretA)
	_, err := a.PeerNodeID(tls.ConnectionState{})
	require.ErrorIs(t, err, auth.ErrPeerRejected)
}

func ExampleFromSecrets() {
	secret := []byte("a dev secret of at least 16 bytes, better 32 random ones")
	a, err := auth.FromSecrets("prod", "node-a", auth.Secrets{secret})
	if err != nil {
		panic(err)
	}
	cfg := a.TLSConfig() // for tcp.Options.TLS: listen and dial with it
	fmt.Println(cfg.MinVersion == tls.VersionTLS13, cfg.ClientAuth == tls.RequireAnyClientCert)
	cert, _ := cfg.GetCertificate(nil)
	fmt.Println(cert.Leaf.URIs[0])
	// Output:
	// true true
	// dynamo://prod/node-a
}

// certPool returns a pool holding certs.
func certPool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
