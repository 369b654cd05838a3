// quorum.go: §4.5 the coordinator: parallel fan-out to replicas, the quorum
// tally, and read repair with late replies.
package dynamo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dynamo-kv/dynamo/transport"
)

// vote is the state of a quorum tally.
type vote int

const (
	votePending vote = iota // not enough answers yet either way
	voteMet                 // need successes reached
	voteFailed              // too many failures for need to be reachable
)

// tally counts replica answers against a quorum. It is a plain value: the
// rule "is the quorum met" is tested without any network.
type tally struct {
	need, total int
	ok, failed  int
}

func (t *tally) record(ok bool) {
	if ok {
		t.ok++
	} else {
		t.failed++
	}
}

func (t tally) result() vote {
	switch {
	case t.ok >= t.need:
		return voteMet
	case t.total-t.failed < t.need:
		return voteFailed
	}
	return votePending
}

// readReply is one replica's answer to a read.
type readReply struct {
	m   Member
	st  state
	err error
}

// readAll fans a read of key out to replicas in parallel, returns once r have
// answered (or the quorum cannot be met, or ctx ends), and repairs stale
// primaries in the background once every replica has answered or timed out.
func (s *Store) readAll(ctx context.Context, key []byte, replicas, primaries []Member, r int) (state, error) {
	ch := make(chan readReply, len(replicas))
	req := encodeMessage(&message{Version: protocolVersion, Kind: kindGet, Cluster: s.wireCluster, Key: key})
	for _, m := range replicas {
		s.goBackground(func(bg context.Context) {
			st, err := s.readReplica(bg, m, key, req)
			ch <- readReply{m, st, err}
		})
	}
	t := tally{need: r, total: len(replicas)}
	replies := make([]readReply, 0, len(replicas))
	var ctxErr error
	for t.result() == votePending && ctxErr == nil {
		select {
		case rep := <-ch:
			replies = append(replies, rep)
			t.record(rep.err == nil)
		case <-ctx.Done():
			ctxErr = ctx.Err()
		}
	}
	merged := state{}
	for _, rep := range replies {
		if rep.err == nil {
			merged = syncStates(merged, rep.st)
		}
	}
	early := replies
	s.goBackground(func(bg context.Context) { s.readRepair(bg, key, replicas, primaries, early, ch) })
	if t.result() == voteMet {
		return merged, nil
	}
	return state{}, quorumError("get", r, replies, ctxErr)
}

// readRepair waits for the replies still outstanding (each bounded by the
// replica timeout), merges every state it has, and sends the merged state to
// each primary that answered with a stale one (§4.7 read repair). Replicas
// that failed to answer are left to hinted handoff and anti-entropy, and
// fallbacks are never repaired: they hold hints, not replicas.
func (s *Store) readRepair(ctx context.Context, key []byte, replicas, primaries []Member, replies []readReply, ch <-chan readReply) {
	all := replies
	for len(all) < len(replicas) {
		all = append(all, <-ch) // every reader sends exactly once
	}
	merged := state{}
	answered := 0
	for _, rep := range all {
		if rep.err == nil {
			merged = syncStates(merged, rep.st)
			answered++
		}
	}
	if answered < 2 || merged.empty() {
		return
	}
	var enc, req []byte
	for _, rep := range all {
		// A replica whose stored state is damaged answered with an error
		// matching ErrCorrupt: it takes the merged state in its place.
		stale := rep.err == nil && !sameVersion(rep.st, merged) || rep.err != nil && isCorrupt(rep.err)
		if !stale || !slices.Contains(primaries, rep.m) {
			continue
		}
		if req == nil {
			enc = encodeState(merged)
			req = encodeMessage(&message{Version: protocolVersion, Kind: kindReplicate, Cluster: s.wireCluster, Key: key, State: enc})
		}
		if err := s.writeReplica(ctx, rep.m, key, merged, req); err != nil {
			s.log.Debug("read repair failed", "key", key, "replica", rep.m.ID, "err", err)
		} else {
			s.stats.readRepairs.Add(1)
		}
	}
}

// writeAll replicates key's state st to replicas in parallel and returns once
// need of them (counting already, the acks the caller has) have acknowledged
// durably, or the quorum cannot be met. A replica that is unreachable or
// fails is replaced by a fallback from pool (nil: none), which stores st as a
// hint for it; the fallback's acknowledgement counts toward need (§4.6).
// enc is st encoded (the coordinator already encoded it to store it).
func (s *Store) writeAll(ctx context.Context, op string, key []byte, st state, enc []byte, replicas []Member, pool *fallbackPool, need, already int) error {
	if len(replicas) == 0 {
		if already >= need {
			return nil
		}
		return &QuorumError{Op: op, Need: need, Got: already}
	}
	type ack struct {
		m   Member
		err error
	}
	ch := make(chan ack, len(replicas))
	req := encodeMessage(&message{Version: protocolVersion, Kind: kindReplicate, Cluster: s.wireCluster, Key: key, State: enc})
	for _, m := range replicas {
		s.goBackground(func(bg context.Context) {
			err := errUnreachable
			tried := s.reachable(m.ID)
			if tried {
				err = s.writeReplica(bg, m, key, st, req)
			}
			for err != nil {
				f, ok := pool.take()
				if !ok {
					break
				}
				hint := encodeMessage(&message{Version: protocolVersion, Kind: kindReplicate, Cluster: s.wireCluster, Key: key, State: enc, Hint: m.ID})
				if herr := s.writeReplica(bg, f, key, st, hint); herr == nil {
					err = nil
				} else {
					s.log.Debug("fallback declined", "fallback", f.ID, "for", m.ID, "err", herr)
				}
			}
			if err != nil && !tried && s.members.Reachable(m.ID) {
				// No fallback took it, and only this node's own failure
				// detector suspects the primary: try it after all.
				err = s.writeReplica(bg, m, key, st, req)
			}
			ch <- ack{m, err}
		})
	}
	t := tally{need: need, total: len(replicas) + already, ok: already}
	var failed []readReply
	var ctxErr error
	for t.result() == votePending && ctxErr == nil {
		select {
		case a := <-ch:
			t.record(a.err == nil)
			if a.err != nil {
				failed = append(failed, readReply{m: a.m, err: a.err})
			}
		case <-ctx.Done():
			ctxErr = ctx.Err()
		}
	}
	if t.result() == voteMet {
		return nil
	}
	qe := quorumError(op, need, failed, ctxErr).(*QuorumError)
	qe.Got = t.ok
	return qe
}

func quorumError(op string, need int, replies []readReply, ctxErr error) error {
	qe := &QuorumError{Op: op, Need: need, PerReplica: map[string]error{}}
	for _, rep := range replies {
		if rep.err == nil {
			qe.Got++
		} else {
			qe.PerReplica[rep.m.ID] = rep.err
		}
	}
	if ctxErr != nil && len(qe.PerReplica) == 0 {
		qe.PerReplica = nil
	}
	return qe
}

// readReplica reads key's state from one replica: locally without a network
// hop when m is this node. req is the encoded kindGet message.
func (s *Store) readReplica(ctx context.Context, m Member, key, req []byte) (state, error) {
	if m.ID == s.cfg.NodeID {
		st, err := s.localRead(key)
		if err != nil {
			return state{}, err
		}
		return s.readThrough(ctx, key, st), nil
	}
	resp, err := s.call(ctx, m, req)
	if err != nil {
		return state{}, err
	}
	if resp.Kind != kindGetReply {
		return state{}, fmt.Errorf("%w: %s answered a get with %v", ErrProtocol, m.ID, resp.Kind)
	}
	st, err := decodeState(resp.State)
	if err != nil {
		return state{}, fmt.Errorf("replica %s: %w", m.ID, err)
	}
	return st, nil
}

// writeReplica merges st into one replica durably. req is the encoded
// kindReplicate message for remote replicas.
func (s *Store) writeReplica(ctx context.Context, m Member, key []byte, st state, req []byte) error {
	if m.ID == s.cfg.NodeID {
		return s.localMerge(key, st)
	}
	resp, err := s.call(ctx, m, req)
	if err != nil {
		return err
	}
	if resp.Kind != kindAck {
		return fmt.Errorf("%w: %s answered a replicate with %v", ErrProtocol, m.ID, resp.Kind)
	}
	return nil
}

// call sends an encoded request to m with the replica timeout and decodes the
// reply. A kindError reply becomes the error it carries.
func (s *Store) call(ctx context.Context, m Member, req []byte) (*message, error) {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.ReplicaTimeout)
	defer cancel()
	return s.callObserved(ctx, cctx, m, req)
}

// callObserved makes the call with callCtx, a context derived from ctx, and
// feeds the outcome to the node's own failure detector: an answer clears m, a
// call that got none while ctx (the caller's own deadline) still ran marks it
// down for a backoff.
func (s *Store) callObserved(ctx, callCtx context.Context, m Member, req []byte) (*message, error) {
	raw, err := s.cfg.Transport.Call(callCtx, m.Addr, req)
	if err != nil {
		if errors.Is(err, transport.ErrClosed) {
			return nil, fmt.Errorf("%w: %w", ErrClosed, err)
		}
		// A peer that answered (with an error, or busy) is up; one that did
		// not, while the caller still waited, is backed off.
		if ctx.Err() == nil && !errors.Is(err, transport.ErrFrameTooLarge) && !errors.Is(err, transport.ErrRemote) && !errors.Is(err, transport.ErrBusy) {
			s.health.failed(m.ID, time.Now(), s.cfg.ReplicaTimeout)
		}
		return nil, err
	}
	s.health.ok(m.ID)
	resp, err := decodeMessage(raw)
	if err != nil {
		return nil, fmt.Errorf("reply from %s: %w", m.ID, err)
	}
	if resp.Kind == kindError {
		return nil, errorFromMessage(resp)
	}
	return resp, nil
}

// errorFromMessage rebuilds the error a peer sent.
func errorFromMessage(m *message) error {
	if m.Code == codeWriteQuorum {
		return &QuorumError{Op: "put", Need: m.Need, Got: m.Got, PerReplica: map[string]error{"coordinator": errors.New(m.Msg)}}
	}
	if sentinel, ok := codeErrors[m.Code]; ok {
		return fmt.Errorf("%w (remote: %s)", sentinel, m.Msg)
	}
	return fmt.Errorf("%w: %s", transport.ErrRemote, m.Msg)
}

// errorMessage encodes err as a kindError reply.
func (s *Store) errorMessage(err error) []byte {
	m := &message{Version: protocolVersion, Kind: kindError, Cluster: s.wireCluster, Msg: err.Error()}
	var qe *QuorumError
	switch {
	case errors.As(err, &qe):
		m.Code, m.Need, m.Got = codeWriteQuorum, qe.Need, qe.Got
	default:
		for code, sentinel := range codeErrors {
			if errors.Is(err, sentinel) {
				m.Code = code
				break
			}
		}
	}
	return encodeMessage(m)
}
