// server.go: DESIGN §8 the node's side of every message from a peer: each
// request kind mapped onto the replica (replica.go), the anti-entropy
// listings, or the coordinator for a forwarded write.
package dynamo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dynamo-kv/dynamo/transport"
)

// handle serves one request from a peer. It never panics on bad input: a
// malformed request gets an error reply.
func (s *Store) handle(ctx context.Context, raw []byte) ([]byte, error) {
	m, err := decodeMessage(raw, s.wire)
	if err != nil {
		return s.errorMessage(err), nil
	}
	if m.Cluster != s.wireCluster {
		return s.errorMessage(fmt.Errorf("%w: message from another cluster or partition count", ErrProtocol)), nil
	}
	if p, ok := transport.PeerFromContext(ctx); ok && p.NodeID != "" && p.NodeID != m.From {
		return s.errorMessage(fmt.Errorf("%w: a message from %q claims to come from %q", ErrProtocol, p.NodeID, m.From)), nil
	}
	if !s.beginOp() {
		return s.errorMessage(ErrClosed), nil
	}
	defer s.ops.Done()
	s.metrics.countServed(m.Body)
	reply, err := s.serve(ctx, m)
	if err != nil {
		s.metrics.servedErrors.Add(1)
		if _, ok := m.Body.(*replicateReq); ok {
			s.checkStorage()
		}
		return s.errorMessage(err), nil
	}
	return s.encode(reply), nil
}

// serve answers one decoded request.
func (s *Store) serve(ctx context.Context, m *envelope) (body, error) {
	switch b := m.Body.(type) {
	case *pingReq:
		return &ackReply{}, nil
	case *getReq:
		q := s.place(b.Key)
		st, enc, err := s.rep.readEncoded(q.p, q.key)
		if err != nil {
			return nil, err
		}
		if b.Flags&flagNoReadThrough == 0 && s.pulling(q.p) {
			st, enc = s.readThrough(ctx, q, st), nil // as localRead does
		}
		if enc == nil {
			enc = encodeState(st)
		}
		reply := &getReply{State: enc}
		if b.Flags&flagWantActor != 0 {
			reply.Actor = s.rep.ownActor(b.Key, st)
		}
		return reply, nil
	case *replicateReq:
		st, err := decodeOwnedState(b.State) // a subslice of the request, which is ours
		if err != nil {
			return nil, err
		}
		p := partitionOf(b.Key, s.cfg.Partitions)
		if b.HintFor != "" && b.HintFor != s.cfg.NodeID {
			err = s.rep.hints.put(b.HintFor, p, b.Key, st)
		} else {
			err = s.rep.merge(p, b.Key, st)
		}
		return &ackReply{}, err
	case *purgeReq:
		return &ackReply{}, s.rep.purge(partitionOf(b.Key, s.cfg.Partitions), b.Key, b.Digest)
	case *foldReq:
		return &ackReply{}, s.rep.fold(partitionOf(b.Key, s.cfg.Partitions), b.Key, b.Entries)
	case *putReq:
		return s.servePut(ctx, b)
	case *rangesReq:
		return s.serveRanges(m.From, b)
	case *keysReq:
		return s.serveKeys(b)
	case *exchangeReq:
		return s.serveExchange(m.From, b)
	}
	return nil, fmt.Errorf("%w: %v is not a request", ErrProtocol, m.Body.kind())
}

// servePut coordinates a write forwarded by a node that is not a replica. A
// request delivered twice (same ReqID) is coordinated once.
func (s *Store) servePut(ctx context.Context, b *putReq) (body, error) {
	if b.ReqID == 0 {
		return s.coordinateForwarded(ctx, b)
	}
	f, first := s.forwarded.begin(b.ReqID, 2*s.cfg.RequestTimeout)
	if !first {
		select {
		case <-f.done:
			return f.reply, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	reply, err := s.coordinateForwarded(ctx, b)
	s.forwarded.end(f, reply, err)
	return reply, err
}

func (s *Store) coordinateForwarded(ctx context.Context, b *putReq) (body, error) {
	if !b.Tombstone && len(b.Value) > s.cfg.Limits.MaxValueSize {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrValueTooLarge, len(b.Value), s.cfg.Limits.MaxValueSize)
	}
	if err := s.checkContextSize(b.Context, b.ContextDot); err != nil {
		return nil, err
	}
	q := s.place(b.Key)
	replicas := q.r.preference(q.p, s.cfg.N)
	if !slices.ContainsFunc(replicas, func(mb Member) bool { return mb.ID == s.cfg.NodeID }) {
		return nil, fmt.Errorf("%w: %s is not a replica of the key", ErrNoReplica, s.cfg.NodeID)
	}
	if b.W < 1 || b.W > s.cfg.N {
		return nil, fmt.Errorf("%w: W (%d) must be between 1 and N (%d)", ErrBadOption, b.W, s.cfg.N)
	}
	timeout := time.Duration(b.TimeoutMS) * time.Millisecond
	if timeout <= 0 || timeout > s.cfg.RequestTimeout {
		timeout = s.cfg.RequestTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	w := write{op: "put", value: b.Value, cvv: b.Context, cdot: b.ContextDot}
	if b.Tombstone {
		w = write{op: "delete", tombstone: true, cvv: b.Context, cdot: b.ContextDot}
	} else if w.value == nil {
		w.value = []byte{}
	}
	primariesOnly := b.PrimariesOnly || s.cfg.PrimariesOnly
	d, err := s.coordinate(ctx, q, w, min(b.W, len(replicas)), primariesOnly)
	if err != nil {
		return nil, err
	}
	return &ackReply{Dot: d}, nil
}

// serveRanges hashes each requested range of the partitions from shares
// with this node (or of the explicit set).
func (s *Store) serveRanges(from string, b *rangesReq) (body, error) {
	parts, err := s.aeParts(from, b)
	if err != nil {
		return nil, err
	}
	prefix := s.prefixHashes(parts)
	reply := &hashesReply{Hashes: make([]uint64, 0, len(b.Ranges)/2)}
	for i := 0; i < len(b.Ranges); i += 2 {
		lo, hi := b.Ranges[i], b.Ranges[i+1]
		if lo > hi || int(hi) > len(parts) {
			return nil, fmt.Errorf("%w: range [%d,%d) of %d partitions", ErrProtocol, lo, hi, len(parts))
		}
		reply.Hashes = append(reply.Hashes, prefix[hi]^prefix[lo])
	}
	return reply, nil
}

// aeParts resolves the partition set of a ranges request from the node from.
func (s *Store) aeParts(from string, b *rangesReq) ([]uint32, error) {
	if b.Explicit {
		return fromRuns(b.Runs, s.cfg.Partitions)
	}
	r := s.ring.Load()
	if b.RingHash != r.fingerprint {
		return nil, fmt.Errorf("%w: ring differs from %s's; retry when membership settles", ErrProtocol, from)
	}
	return s.sharedPartitions(r, from), nil
}

// serveKeys lists the requested partitions in order, in a reply bounded in
// bytes: Whole says how many were listed whole; the next one was listed up
// to the reply's last key. At least one key is listed if any is left.
func (s *Store) serveKeys(b *keysReq) (body, error) {
	for _, p := range b.Parts {
		if int(p) >= s.cfg.Partitions {
			return nil, fmt.Errorf("%w: partition %d of %d", ErrProtocol, p, s.cfg.Partitions)
		}
	}
	reply := &keyListReply{}
	size := 0
	from := b.After
	if len(from) == 0 {
		from = nil
	}
	for _, p := range b.Parts {
		whole := true
		err := s.rep.listPartition(int(p), from, func(key []byte, d uint64) bool {
			if len(reply.Keys) > 0 && size+len(key)+16 > s.batchBytes {
				whole = false
				return false
			}
			reply.Keys = append(reply.Keys, bytes.Clone(key))
			reply.Digests = append(reply.Digests, d)
			size += len(key) + 16
			return true
		})
		if err != nil {
			return nil, err
		}
		if !whole {
			break
		}
		reply.Whole++
		from = nil
	}
	return reply, nil
}

// serveExchange merges the pushed states, in one storage commit where the
// storage can, and answers with the merged states that differ from what was
// pushed, as many as fit the byte budget (at least one): the caller asks
// again for the rest.
func (s *Store) serveExchange(from string, b *exchangeReq) (body, error) {
	parts := make([]int, len(b.Keys))
	pushed := make([]state, len(b.Keys))
	for i, k := range b.Keys {
		parts[i] = partitionOf(k, s.cfg.Partitions)
		// A state damaged on the sender's disk is taken as absent: this
		// node's reply then repairs the sender.
		pushed[i], _ = decodeLocal(b.States[i])
	}
	if err := s.rep.mergeBatch(parts, b.Keys, pushed); err != nil {
		return nil, err
	}
	reply := &statesReply{States: [][]byte{}}
	if b.PushOnly {
		s.noteHandover(from, b.Keys)
		return reply, nil
	}
	size := 0
	for i, k := range b.Keys {
		raw, err := s.rep.raw(parts[i], k)
		if err != nil {
			return nil, err
		}
		if bytes.Equal(raw, b.States[i]) {
			raw = nil
		}
		if i > 0 && size+len(k)+len(raw)+16 > s.batchBytes {
			break
		}
		reply.States = append(reply.States, raw)
		size += len(k) + len(raw) + 16
	}
	return reply, nil
}

// replyCodes lists the error codes a reply carries, most specific first:
// an error matching several sentinels takes the first.
var replyCodes = []errCode{codeTooManySiblings, codeValueTooLarge, codeBadContext, codeHintsFull, codeCorrupt, codeNoReplica, codeClosed, codeProtocol}

// errorMessage encodes err as an errorReply.
func (s *Store) errorMessage(err error) []byte {
	b := &errorReply{Msg: err.Error()}
	if len(b.Msg) > maxMsgLen {
		b.Msg = b.Msg[:maxMsgLen]
	}
	var qe *QuorumError
	if errors.As(err, &qe) {
		b.Code, b.Need, b.Got = codeWriteQuorum, qe.Need, qe.Got
	} else {
		for _, code := range replyCodes {
			if errors.Is(err, codeErrors[code]) {
				b.Code = code
				break
			}
		}
	}
	return s.encode(b)
}

// dedupe remembers recently coordinated forwarded writes by request ID, so a
// request the network delivers twice is applied once: a second delivery
// waits for the first and gets its reply.
type dedupe struct {
	mu     sync.Mutex
	flight map[uint64]*flight
	order  []dedupeEntry
}

type flight struct {
	done  chan struct{}
	reply body
	err   error
}

type dedupeEntry struct {
	id      uint64
	expires time.Time
}

const dedupeMax = 1 << 16

// begin returns the flight for id and whether the caller is the first to
// run it. The first caller must call end.
func (d *dedupe) begin(id uint64, ttl time.Duration) (*flight, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	for len(d.order) > 0 && (now.After(d.order[0].expires) || len(d.order) > dedupeMax) {
		delete(d.flight, d.order[0].id)
		d.order = d.order[1:]
	}
	if f, ok := d.flight[id]; ok {
		return f, false
	}
	f := &flight{done: make(chan struct{})}
	if d.flight == nil {
		d.flight = map[uint64]*flight{}
	}
	d.flight[id] = f
	d.order = append(d.order, dedupeEntry{id, now.Add(ttl)})
	return f, true
}

func (d *dedupe) end(f *flight, reply body, err error) {
	f.reply, f.err = reply, err
	close(f.done)
}
