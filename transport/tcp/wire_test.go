// Tests of the tcp wire protocol against hand-written peers: bad frames, the pool size, and deadlines.
package tcp_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/transport"
	"github.com/dynamo-kv/dynamo/transport/tcp"
	"github.com/dynamo-kv/dynamo/transport/transporttest"
)

// Frame kinds, as on the wire.
const (
	kindRequest    = 1
	kindReply      = 2
	kindError      = 3
	kindNotServing = 5
)

// frame encodes one frame with version v.
func frame(v, kind byte, id uint64, deadlineMs uint32, payload []byte) []byte {
	b := make([]byte, 18, 18+len(payload))
	binary.BigEndian.PutUint32(b[0:4], uint32(14+len(payload)))
	b[4], b[5] = v, kind
	binary.BigEndian.PutUint64(b[6:14], id)
	binary.BigEndian.PutUint32(b[14:18], deadlineMs)
	return append(b, payload...)
}

type rawFrame struct {
	kind       byte
	id         uint64
	deadlineMs uint32
	payload    []byte
}

func readRaw(r io.Reader) (rawFrame, error) {
	var hdr [18]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return rawFrame{}, err
	}
	f := rawFrame{
		kind:       hdr[5],
		id:         binary.BigEndian.Uint64(hdr[6:14]),
		deadlineMs: binary.BigEndian.Uint32(hdr[14:18]),
		payload:    make([]byte, binary.BigEndian.Uint32(hdr[0:4])-14),
	}
	_, err := io.ReadFull(r, f.payload)
	return f, err
}

// dialRaw connects to addr with a read deadline, so no test waits forever.
func dialRaw(t *testing.T, addr string) net.Conn {
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	require.NoError(t, nc.SetDeadline(time.Now().Add(transporttest.WaitTimeout)))
	return nc
}

// requireHungUp checks the server closed nc without sending anything.
func requireHungUp(t *testing.T, nc net.Conn) {
	t.Helper()
	n, err := nc.Read(make([]byte, 1))
	require.Zero(t, n)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server kept the connection open")
	require.Error(t, err)
}

func TestServer_ClosesConnectionOnBadFrames(t *testing.T) {
	tests := map[string][]byte{
		// 4 GiB announced: the server must hang up, not allocate it.
		"oversized length":      {0xff, 0xff, 0xff, 0xff},
		"one byte over the max": frame(1, kindRequest, 1, 0, make([]byte, 1025)),
		"length under header":   {0, 0, 0, 3, 1, 1, 0},
		"unknown version":       frame(9, kindRequest, 1, 0, []byte("x")),
		"reply sent to server":  frame(1, kindReply, 1, 0, []byte("x")),
	}
	server := listen(t, tcp.Options{MaxFrameSize: 1024})
	require.NoError(t, server.Serve(echo))
	for name, bad := range tests {
		t.Run(name, func(t *testing.T) {
			nc := dialRaw(t, server.Addr())
			_, err := nc.Write(bad)
			require.NoError(t, err)
			requireHungUp(t, nc)
		})
	}
	// The server still serves well-behaved peers.
	nc := dialRaw(t, server.Addr())
	_, err := nc.Write(frame(1, kindRequest, 7, 0, []byte("still here")))
	require.NoError(t, err)
	f, err := readRaw(nc)
	require.NoError(t, err)
	require.Equal(t, rawFrame{kind: kindReply, id: 7, payload: []byte("still here")}, f)
}

func TestServer_ReportsNotServing(t *testing.T) {
	server := listen(t, tcp.Options{})
	nc := dialRaw(t, server.Addr())
	_, err := nc.Write(frame(1, kindRequest, 3, 0, nil))
	require.NoError(t, err)
	f, err := readRaw(nc)
	require.NoError(t, err)
	require.Equal(t, rawFrame{kind: kindNotServing, id: 3, payload: []byte{}}, f)
}

func TestServer_HandlerDeadlineFromHeader(t *testing.T) {
	left := make(chan time.Duration, 2)
	server := listen(t, tcp.Options{})
	require.NoError(t, server.Serve(func(ctx context.Context, _ []byte) ([]byte, error) {
		d, ok := ctx.Deadline()
		if !ok {
			left <- -1
			return nil, nil
		}
		left <- time.Until(d)
		return nil, nil
	}))
	nc := dialRaw(t, server.Addr())
	_, err := nc.Write(append(frame(1, kindRequest, 1, 60_000, nil), frame(1, kindRequest, 2, 0, nil)...))
	require.NoError(t, err)
	for range 2 {
		_, err := readRaw(nc)
		require.NoError(t, err)
	}
	got := []time.Duration{<-left, <-left}
	require.Contains(t, got, time.Duration(-1), "a request without a deadline gives a ctx without one")
	for _, d := range got {
		if d != -1 {
			require.InDelta(t, float64(time.Minute), float64(d), float64(10*time.Second))
		}
	}
}

func TestServer_LongErrorTextIsTruncated(t *testing.T) {
	server := listen(t, tcp.Options{MaxFrameSize: 16})
	require.NoError(t, server.Serve(func(context.Context, []byte) ([]byte, error) {
		return nil, errors.New("a handler error far longer than sixteen bytes")
	}))
	client := listen(t, tcp.Options{MaxFrameSize: 16})
	_, err := client.Call(ctx(t), server.Addr(), nil)
	var re *transport.RemoteError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "a handler error ", re.Msg)
}

// fakeServer accepts connections on 127.0.0.1 and runs serve on each.
func fakeServer(t *testing.T, serve func(nc net.Conn)) (addr string, accepted func() int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		mu    sync.Mutex
		count int
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			count++
			mu.Unlock()
			wg.Go(func() {
				defer nc.Close()
				serve(nc)
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), func() int {
		mu.Lock()
		defer mu.Unlock()
		return count
	}
}

// echoFrames answers each request with a reply carrying the same payload.
func echoFrames(nc net.Conn) {
	var mu sync.Mutex
	for {
		f, err := readRaw(nc)
		if err != nil {
			return
		}
		go func() { // reply out of order, as a real server may
			mu.Lock()
			defer mu.Unlock()
			_, _ = nc.Write(frame(1, kindReply, f.id, 0, f.payload))
		}()
	}
}

func TestClient_PoolSize(t *testing.T) {
	for _, conns := range []int{1, 2, 4} {
		addr, accepted := fakeServer(t, echoFrames)
		client := listen(t, tcp.Options{ConnsPerPeer: conns})
		var wg sync.WaitGroup
		for i := range 100 {
			wg.Go(func() {
				req := binary.BigEndian.AppendUint32(nil, uint32(i))
				reply, err := client.Call(ctx(t), addr, req)
				if !(err == nil && string(reply) == string(req)) {
					t.Errorf("call %d: reply %x, error %v", i, reply, err)
				}
			})
		}
		wg.Wait()
		// Small calls use every slot but the last, kept for bulk ones.
		require.Equal(t, max(conns-1, 1), accepted(), "connections opened with ConnsPerPeer=%d", conns)
	}
}

func TestClient_BadReplies(t *testing.T) {
	tests := map[string]func(req rawFrame) []byte{
		"oversized length": func(rawFrame) []byte { return []byte{0x7f, 0xff, 0xff, 0xff} },
		"unknown version":  func(r rawFrame) []byte { return frame(9, kindReply, r.id, 0, nil) },
		"unknown kind":     func(r rawFrame) []byte { return frame(1, 200, r.id, 0, nil) },
		"request to client": func(r rawFrame) []byte {
			return frame(1, kindRequest, r.id, 0, nil)
		},
		"hang up": func(rawFrame) []byte { return nil },
	}
	for name, reply := range tests {
		t.Run(name, func(t *testing.T) {
			addr, _ := fakeServer(t, func(nc net.Conn) {
				if req, err := readRaw(nc); err == nil {
					_, _ = nc.Write(reply(req))
				}
			})
			client := listen(t, tcp.Options{})
			_, err := client.Call(ctx(t), addr, []byte("x"))
			require.ErrorIs(t, err, transport.ErrUnreachable)
		})
	}
}

func TestClient_RemoteErrorNamesAddressCalled(t *testing.T) {
	addr, _ := fakeServer(t, func(nc net.Conn) {
		if req, err := readRaw(nc); err == nil {
			_, _ = nc.Write(frame(1, kindError, req.id, 0, []byte("no such key")))
		}
	})
	client := listen(t, tcp.Options{})
	_, err := client.Call(ctx(t), addr, nil)
	require.Equal(t, &transport.RemoteError{Addr: addr, Msg: "no such key"}, err)
}

func TestClient_SendsRemainingDeadline(t *testing.T) {
	got := make(chan rawFrame, 1)
	addr, _ := fakeServer(t, func(nc net.Conn) {
		if req, err := readRaw(nc); err == nil {
			got <- req
			_, _ = nc.Write(frame(1, kindReply, req.id, 0, nil))
		}
	})
	client := listen(t, tcp.Options{})
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := client.Call(c, addr, nil)
	require.NoError(t, err)
	req := <-got
	require.InDelta(t, 60_000, req.deadlineMs, 10_000)
	require.Equal(t, byte(kindRequest), req.kind)
}
