// Tests of the tcp transport: the conformance suite, with and without mutual TLS, and its options.
package tcp_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dynamo-kv/dynamo/transport"
	"github.com/dynamo-kv/dynamo/transport/tcp"
	"github.com/dynamo-kv/dynamo/transport/transporttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// factory listens on 127.0.0.1 ports the kernel picks.
type factory struct{ opts tcp.Options }

func (f factory) New(t *testing.T) transport.Transport { return f.Reopen(t, "127.0.0.1:0") }

func (f factory) Reopen(t *testing.T, addr string) transport.Transport {
	tr, err := tcp.Listen(addr, f.opts)
	require.NoError(t, err)
	return tr
}

func (f factory) MaxFrameSize() int { return f.opts.MaxFrameSize }

func TestTCP_Conformance(t *testing.T) {
	transporttest.Run(t, func(t *testing.T) transporttest.Factory {
		return factory{tcp.Options{MaxFrameSize: 64 << 10}}
	})
}

func TestTCP_Conformance_MutualTLS(t *testing.T) {
	cfg := mutualTLS(t)
	transporttest.Run(t, func(t *testing.T) transporttest.Factory {
		return factory{tcp.Options{MaxFrameSize: 64 << 10, TLS: cfg}}
	})
}

func TestTCP_Conformance_OneConnPerPeer(t *testing.T) {
	transporttest.Run(t, func(t *testing.T) transporttest.Factory {
		return factory{tcp.Options{MaxFrameSize: 64 << 10, ConnsPerPeer: 1}}
	})
}

func TestTCP_MutualTLS_RejectsClientWithoutCertificate(t *testing.T) {
	cfg := mutualTLS(t)
	server := listen(t, tcp.Options{TLS: cfg})
	require.NoError(t, server.Serve(echo))

	anonymous := cfg.Clone()
	anonymous.Certificates = nil
	anonymous.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &tls.Certificate{}, nil // no certificate to offer
	}
	// Listening needs a certificate, so this caller borrows one only to listen.
	client := listen(t, tcp.Options{TLS: withServerCertOnly(anonymous, cfg.Certificates)})
	_, err := client.Call(ctx(t), server.Addr(), []byte("x"))
	require.ErrorIs(t, err, transport.ErrUnreachable)
}

func TestTCP_Listen_InvalidOptions(t *testing.T) {
	_, err := tcp.Listen("127.0.0.1:0", tcp.Options{
		MaxFrameSize: -1, ConnsPerPeer: -2, DialTimeout: -time.Second, WriteTimeout: -time.Second,
		TLS: &tls.Config{},
	})
	require.ErrorIs(t, err, tcp.ErrInvalidOptions)
	for _, want := range []string{"MaxFrameSize (-1)", "ConnsPerPeer (-2)", "DialTimeout (-1s)", "WriteTimeout (-1s)", "TLS has no certificate"} {
		require.ErrorContains(t, err, want)
	}
	require.NoError(t, tcp.Options{}.Validate())

	err = tcp.Options{
		MaxConns: -1, MaxConnInFlight: -1, MaxInFlight: -1, HandshakeTimeout: -1, ReadTimeout: -1, IdleTimeout: -1,
		Identify: func(tls.ConnectionState) (string, error) { return "", nil },
	}.Validate()
	require.ErrorIs(t, err, tcp.ErrInvalidOptions)
	for _, want := range []string{"MaxConns (-1)", "MaxConnInFlight (-1)", "MaxInFlight (-1)", "HandshakeTimeout (-1ns)",
		"ReadTimeout (-1ns)", "IdleTimeout (-1ns)", "Identify needs TLS"} {
		require.ErrorContains(t, err, want)
	}
	err = tcp.Options{MaxFrameSize: 1 << 20, ReadBudget: 1 << 19}.Validate()
	require.ErrorContains(t, err, "ReadBudget (524288) must be at least MaxFrameSize (1048576)")
	require.ErrorContains(t, tcp.Options{ReadBudget: -1}.Validate(), "ReadBudget (-1) must not be negative")
	require.ErrorContains(t, tcp.Options{ReadBudget: 1 << 20}.Validate(), "at least MaxFrameSize (16777216)")
}

func TestTCP_Listen_AddressInUse(t *testing.T) {
	a := listen(t, tcp.Options{})
	_, err := tcp.Listen(a.Addr(), tcp.Options{})
	require.Error(t, err)
}

func TestTCP_DefaultMaxFrameSize(t *testing.T) {
	a := listen(t, tcp.Options{})
	b := listen(t, tcp.Options{})
	require.NoError(t, b.Serve(echo))
	_, err := a.Call(ctx(t), b.Addr(), make([]byte, transport.DefaultMaxFrameSize+1))
	require.ErrorIs(t, err, transport.ErrFrameTooLarge)
}

func echo(_ context.Context, req []byte) ([]byte, error) { return req, nil }

func listen(t testing.TB, opts tcp.Options) *tcp.Transport {
	t.Helper()
	tr, err := tcp.Listen("127.0.0.1:0", opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tr.Close()) })
	return tr
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), transporttest.WaitTimeout)
	t.Cleanup(cancel)
	return c
}

// mutualTLS returns a config that both listens and dials with a certificate
// for 127.0.0.1 from a fresh CA, and requires the same of its peers.
func mutualTLS(t *testing.T) *tls.Config {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "dynamo test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "dynamo node"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: key}},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}

// withServerCertOnly serves certs when listening but offers none when dialling.
func withServerCertOnly(cfg *tls.Config, certs []tls.Certificate) *tls.Config {
	cfg = cfg.Clone()
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &certs[0], nil }
	return cfg
}

// Small calls share one connection, bulk ones (64 KiB and more) go on a
// connection of their own; with three slots the small ones take two in
// turn; with one, everything shares it.
func TestTCP_BulkCallsOnTheirOwnConnection(t *testing.T) {
	for _, tc := range []struct {
		conns             int
		afterSmall, after int // outbound connections after 10 small calls, then after a bulk one
	}{{0, 1, 2}, {3, 2, 3}, {1, 1, 1}} {
		a := listen(t, tcp.Options{ConnsPerPeer: tc.conns})
		b := listen(t, tcp.Options{})
		require.NoError(t, b.Serve(echo))
		for range 10 {
			_, err := a.Call(ctx(t), b.Addr(), []byte("small"))
			require.NoError(t, err)
		}
		require.Equal(t, tc.afterSmall, a.Stats().ConnsOut, "ConnsPerPeer %d, small calls", tc.conns)
		reply, err := a.Call(ctx(t), b.Addr(), make([]byte, 64<<10))
		require.NoError(t, err)
		require.Len(t, reply, 64<<10)
		require.Equal(t, tc.after, a.Stats().ConnsOut, "ConnsPerPeer %d, after a bulk call", tc.conns)
		for range 10 {
			_, err := a.Call(ctx(t), b.Addr(), []byte("small"))
			require.NoError(t, err)
		}
		require.Equal(t, tc.after, a.Stats().ConnsOut, "ConnsPerPeer %d, small calls after", tc.conns)
	}
}
