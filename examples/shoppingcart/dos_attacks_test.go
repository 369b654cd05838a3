// dos_attacks_test.go: the attacks of TestDoS, by an outsider (no secret) and by a member (a TLS identity from the cluster secret), on a node's data and gossip ports.

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/auth"
)

// victim is what an attack aims at: a node's data and gossip addresses.
type victim struct{ data, gossip string }

// attack is one way to try to take a node down. run attacks until ctx
// ends, then lets go of everything it holds before returning.
type attack struct {
	name  string
	short bool // part of the short suite
	run   func(ctx context.Context, v victim)
}

// hugeFrame is the payload length the "announced huge" attacks announce:
// the default frame limit, 16 MiB.
const hugeFrame = 16<<20 - 64

// attacks returns every attack, with a member's TLS identity made from the
// test cluster's secret.
func attacks() ([]attack, error) {
	creds, err := auth.FromSecrets(dynamo.DefaultCluster, "mallory", auth.Secrets{bytes.TrimSpace(testSecret)})
	if err != nil {
		return nil, err
	}
	member := tlsDialer(creds.TLSConfig())
	get := frame(1, rootMessage(kindGet, []byte("cart:alice")))
	ae := frame(2, aeEveryKey(400_000))
	deep := frame(3, nestedEnvelope(hugeFrame))
	list := []attack{
		{"outsider: idle connections", true, func(ctx context.Context, v victim) { swarm(ctx, 500, outsider(v.data), idle) }},
		{"outsider: slowloris", false, func(ctx context.Context, v victim) { swarm(ctx, 500, outsider(v.data), trickle(get)) }},
		{"outsider: frames announced huge", true, func(ctx context.Context, v victim) { swarm(ctx, 200, outsider(v.data), announceHuge) }},
		{"outsider: nested frame", false, func(ctx context.Context, v victim) { swarm(ctx, 4, outsider(v.data), send(deep)) }},
		{"outsider: pipelined flood", false, func(ctx context.Context, v victim) { swarm(ctx, 8, outsider(v.data), flood(get)) }},
		{"outsider: descriptor exhaustion (1500 conns)", true, func(ctx context.Context, v victim) { swarm(ctx, 1500, outsider(v.data), idle) }},
		{"outsider: gossip garbage (UDP and TCP)", false, gossipGarbage},
		{"member: idle connections", false, func(ctx context.Context, v victim) { swarm(ctx, 500, member(v.data), idle) }},
		{"member: slowloris frames", false, func(ctx context.Context, v victim) { swarm(ctx, 500, member(v.data), trickle(get)) }},
		{"member: frames announced huge", true, func(ctx context.Context, v victim) { swarm(ctx, 200, member(v.data), announceHuge) }},
		{"member: pipelined flood, replies unread", true, func(ctx context.Context, v victim) { swarm(ctx, 8, member(v.data), flood(get)) }},
		{"member: descriptor exhaustion (1500 conns)", false, func(ctx context.Context, v victim) { swarm(ctx, 1500, member(v.data), idle) }},
		{"member: AE frame listing 400k keys", true, func(ctx context.Context, v victim) { swarm(ctx, 1, member(v.data), exchange(ae)) }},
		{"member: nested frame", true, func(ctx context.Context, v victim) { swarm(ctx, 2, member(v.data), send(deep)) }},
	}
	return list, nil
}

// The attacker process: the test binary, re-run with dosAttackEnv naming
// the attack and dosVictimEnv the victim's "data,gossip" addresses. It runs
// apart from the legit client, at the lowest CPU priority and on one
// thread, so that what the test measures is the victim's resilience, not
// the attacker's own CPU taken from the client on a small machine.
const (
	dosAttackEnv = "DYNAMO_DOS_ATTACK"
	dosVictimEnv = "DYNAMO_DOS_VICTIM"
)

// runAttacker runs the named attack until stdin closes, and returns the
// process's exit code.
func runAttacker(name string) int {
	runtime.GOMAXPROCS(1)
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, 0, 19)
	raiseNoFile()
	data, gossip, _ := strings.Cut(os.Getenv(dosVictimEnv), ",")
	list, err := attacks()
	if err != nil {
		fmt.Fprintln(os.Stderr, "attacker:", err)
		return 1
	}
	for _, at := range list {
		if at.name != name {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin) // the test closes it to stop the attack
			cancel()
		}()
		fmt.Println("attacking")
		at.run(ctx, victim{data: data, gossip: gossip})
		return 0
	}
	fmt.Fprintf(os.Stderr, "attacker: no attack %q\n", name)
	return 2
}

// dialer opens one connection of an attack.
type dialer func(ctx context.Context) (net.Conn, error)

// outsider dials addr over plain TCP: it knows the port, not the secret.
func outsider(addr string) dialer {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// tlsDialer returns the member's dialer: mutual TLS with a certificate the
// cluster's CA signed, so the victim takes it for a node of the cluster.
func tlsDialer(cfg *tls.Config) func(addr string) dialer {
	return func(addr string) dialer {
		return func(ctx context.Context) (net.Conn, error) {
			d := tls.Dialer{Config: cfg}
			return d.DialContext(ctx, "tcp", addr)
		}
	}
}

// swarm runs n attackers, each holding one connection at a time: it dials,
// runs act on the connection until it breaks or ctx ends, and dials again.
func swarm(ctx context.Context, n int, dial dialer, act func(ctx context.Context, c net.Conn)) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				if c, err := dial(ctx); err == nil {
					stop := context.AfterFunc(ctx, func() { _ = c.Close() })
					act(ctx, c)
					stop()
					_ = c.Close()
				}
				pause(ctx, 50*time.Millisecond)
			}
		})
	}
	wg.Wait()
}

// pause waits d or until ctx ends: an attacker's pace.
func pause(ctx context.Context, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

// idle sends nothing and holds the connection until the victim closes it.
func idle(_ context.Context, c net.Conn) { _, _ = io.Copy(io.Discard, c) }

// trickle sends b one byte every 500 ms: slowloris.
func trickle(b []byte) func(ctx context.Context, c net.Conn) {
	return func(ctx context.Context, c net.Conn) {
		for i := 0; ctx.Err() == nil; i = (i + 1) % len(b) {
			if _, err := c.Write(b[i : i+1]); err != nil {
				return
			}
			pause(ctx, 500*time.Millisecond)
		}
	}
}

// announceHuge sends the header of a frame announced at hugeFrame bytes,
// then trickles its payload.
func announceHuge(ctx context.Context, c net.Conn) {
	h := frame(4, nil)
	binary.BigEndian.PutUint32(h, uint32(14+hugeFrame))
	if _, err := c.Write(h); err != nil {
		return
	}
	trickle(bytes.Repeat([]byte{0xc0}, 64))(ctx, c)
}

// flood writes b again and again and never reads a reply.
func flood(b []byte) func(ctx context.Context, c net.Conn) {
	return func(ctx context.Context, c net.Conn) {
		for ctx.Err() == nil {
			if _, err := c.Write(b); err != nil {
				return
			}
		}
	}
}

// send writes b once and holds the connection until the victim closes it.
func send(b []byte) func(ctx context.Context, c net.Conn) {
	return func(ctx context.Context, c net.Conn) {
		if _, err := c.Write(b); err == nil {
			idle(ctx, c)
		}
	}
}

// exchange writes b and reads its reply, again and again.
func exchange(b []byte) func(ctx context.Context, c net.Conn) {
	return func(ctx context.Context, c net.Conn) {
		var h [18]byte
		for ctx.Err() == nil {
			if _, err := c.Write(b); err != nil {
				return
			}
			if _, err := io.ReadFull(c, h[:]); err != nil {
				return
			}
			if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(h[:4]))-14); err != nil {
				return
			}
		}
	}
}

// gossipGarbage sends random datagrams to the gossip port's UDP side and
// random bytes on connections to its TCP side.
func gossipGarbage(ctx context.Context, v victim) {
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := net.Dial("udp", v.gossip)
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 1400)
		for i := 0; ctx.Err() == nil; i++ {
			_, _ = rand.Read(buf)
			_, _ = c.Write(buf)
			if i%64 == 0 {
				pause(ctx, time.Millisecond)
			}
		}
	})
	junk := make([]byte, 64<<10)
	_, _ = rand.Read(junk)
	wg.Go(func() { swarm(ctx, 50, outsider(v.gossip), send(junk)) })
	wg.Wait()
}

// The wire formats the attacks speak. frame is transport/tcp's (a length
// prefix and a 14-byte header); the messages are the root package's
// envelope (wire.go, protocol version 1): an array of version, kind,
// cluster hash, then the fields of that kind in wire.go's order. Update
// them with those files.
const (
	kindGet        = 1
	kindAEExchange = 11
)

// frame returns a request frame with id and payload, and a 2 s deadline.
func frame(id uint64, payload []byte) []byte {
	b := make([]byte, 18, 18+len(payload))
	binary.BigEndian.PutUint32(b, uint32(14+len(payload)))
	b[4], b[5] = 1, 1 // wire version, request
	binary.BigEndian.PutUint64(b[6:], id)
	binary.BigEndian.PutUint32(b[14:], 2000)
	return append(b, payload...)
}

// clusterHash is the envelope's cluster field for the default cluster and
// partition count.
func clusterHash() uint32 {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", dynamo.DefaultCluster, dynamo.DefaultPartitions)
	return h.Sum32()
}

// rootMessage encodes an envelope of kind with the fields after the
// cluster hash.
func rootMessage(kind uint8, fields ...any) []byte {
	b, err := msgpack.Marshal(append([]any{1, kind, clusterHash()}, fields...))
	if err != nil {
		panic(err) // the values are the test's own
	}
	return b
}

// aeEveryKey is an anti-entropy exchange that lists n keys with empty
// states: merge nothing, answer with every key's state.
func aeEveryKey(n int) []byte {
	keys, states := make([][]byte, n), make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "k%07d", i)
		states[i] = []byte{}
	}
	// Key, State, Value, Tombstone, Context, W, TimeoutMS, Code, Msg, Need,
	// Got, Hint, Flags, Parts, Ranges, Hashes, RingHash, Keys, States.
	return rootMessage(kindAEExchange, nil, nil, nil, false, nil, 0, 0, 0, "", 0, 0, "", 0, nil, nil, nil, 0, keys, states)
}

// nestedEnvelope is an envelope of size bytes whose last field, one this
// release does not know, nests arrays as deep as the bytes allow.
func nestedEnvelope(size int) []byte {
	b := []byte{0xdc, 0, 24} // an array of 24 fields
	b = append(b, 1, kindGet)
	for len(b) < 3+23 {
		b = append(b, 0xc0) // nil for the known fields
	}
	b = append(b, bytes.Repeat([]byte{0x91}, size-len(b)-1)...)
	return append(b, 0xc0)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
