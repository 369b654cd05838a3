// Stats: the tcp transport's counters of connections, requests and bytes, for metrics.
package tcp

import (
	"sync/atomic"

	"github.com/dynamo-kv/dynamo/transport"
)

// Stats are a Transport's counters. Those marked "now" are gauges; the
// others count since Listen.
type Stats struct {
	ConnsIn  int // inbound connections open now
	ConnsOut int // outbound connections open now

	Accepted          uint64 // inbound connections accepted, Refused included
	Refused           uint64 // inbound connections closed at once: MaxConns were open
	HandshakeFailures uint64 // inbound connections whose TLS handshake failed or timed out, or whose peer Identify refused
	IdleClosed        uint64 // inbound connections closed after IdleTimeout without a request
	SlowClosed        uint64 // inbound connections closed for a frame not read whole within ReadTimeout
	AcceptErrors      uint64 // failed accepts (such as EMFILE), each followed by a back-off

	InFlight int    // inbound requests being handled or replied to now
	Busy     uint64 // inbound requests answered busy: MaxInFlight were in flight
	// PeerWaits counts inbound requests that waited, their connection not
	// read meanwhile, because their peer had MaxPeerInFlight in flight.
	PeerWaits uint64
	Reserved  int64 // bytes of request payload held against ReadBudget now

	BytesIn  uint64 // frame bytes read, headers included, both directions
	BytesOut uint64 // frame bytes written, headers included, both directions
}

// counters are the transport's event counts.
type counters struct {
	accepted, refused, handshakeFailures, idleClosed, slowClosed, acceptErrors, busy, peerWaits atomic.Uint64
}

// traffic is a byte count in both directions.
type traffic struct{ in, out uint64 }

func (tr *traffic) add(c *conn) {
	tr.in += c.bytesIn.Load()
	tr.out += c.bytesOut.Load()
}

// Stats returns the transport's counters now. It is cheap enough to call at
// every metrics scrape.
func (t *Transport) Stats() Stats {
	s := Stats{
		Accepted:          t.counts.accepted.Load(),
		Refused:           t.counts.refused.Load(),
		HandshakeFailures: t.counts.handshakeFailures.Load(),
		IdleClosed:        t.counts.idleClosed.Load(),
		SlowClosed:        t.counts.slowClosed.Load(),
		AcceptErrors:      t.counts.acceptErrors.Load(),
		InFlight:          int(t.inFlight.Load()),
		Busy:              t.counts.busy.Load(),
		PeerWaits:         t.counts.peerWaits.Load(),
		Reserved:          t.budget.reserved(),
	}
	t.mu.Lock()
	tr := t.gone
	for c := range t.conns {
		tr.add(c)
	}
	s.ConnsIn = t.connsIn
	s.ConnsOut = len(t.conns) - t.connsIn
	t.mu.Unlock()
	s.BytesIn, s.BytesOut = tr.in, tr.out
	return s
}

// TransportStats returns the figures of Stats that every transport can
// report (transport.StatsReporter), for the Store's metrics.
func (t *Transport) TransportStats() transport.Stats {
	s := t.Stats()
	return transport.Stats{ConnsIn: s.ConnsIn, ConnsOut: s.ConnsOut, Accepted: s.Accepted, Refused: s.Refused,
		InFlight: s.InFlight, Busy: s.Busy, BytesIn: s.BytesIn, BytesOut: s.BytesOut}
}
