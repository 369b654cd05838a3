// health.go: the node's health in the style of etcd's Err and ReadyNotify:
// a Storage that failed for good (a write or fsync error) makes the node
// refuse writes and report it once on Err; Health gathers it with
// readiness and reachability.
package dynamo

import (
	"fmt"

	"github.com/dynamo-kv/dynamo/storage"
)

// Health is a node's health now. The zero Health is a node that is not
// ready, has no members and has not failed.
type Health struct {
	// Ready is whether the node has finished the pulls it started with
	// (see Store.Ready).
	Ready bool `json:"ready"`
	// Err is the Storage's failure, matching ErrStorageFailed, or nil.
	// Once set, it stays: the node refuses writes until it is restarted.
	Err error `json:"-"`
	// Fatal is Err's text, or empty.
	Fatal string `json:"fatal,omitempty"`
	// Members is the number of nodes in this node's ring; Reachable, how
	// many of them it believes up (itself included).
	Members   int `json:"members"`
	Reachable int `json:"reachable"`
	// PendingTransfers is the partitions this node still has to pull.
	PendingTransfers int `json:"pending_transfers"`
}

// Healthy reports whether the node's Storage has not failed.
func (h Health) Healthy() bool { return h.Err == nil }

// Health returns the node's health now. It asks the Storage whether it has
// failed (storage.Failer), so a failure in the Storage's background work
// shows here even before a write meets it.
func (s *Store) Health() Health {
	h := Health{PendingTransfers: s.PendingTransfers(), Err: s.checkStorage()}
	select {
	case <-s.Ready():
		h.Ready = true
	default:
	}
	if h.Err != nil {
		h.Fatal = h.Err.Error()
	}
	members := s.ring.Load().members
	h.Members = len(members)
	for _, m := range members {
		if s.reachable(m.ID) {
			h.Reachable++
		}
	}
	return h
}

// Err returns a channel that receives the node's fatal error, once: the
// Storage failed for good (an error matching ErrStorageFailed). The node
// then refuses Puts and Deletes; the embedder should restart it on a
// reopened or replaced disk. The failure is noticed when a write meets
// it, or when Health or Metrics asks the Storage.
func (s *Store) Err() <-chan error { return s.errc }

// checkStorage asks the Storage whether it has failed for good and, the
// first time it has, records the failure, logs it and sends it on Err. It
// returns the recorded failure, or nil.
func (s *Store) checkStorage() error {
	if e := s.fatal.Load(); e != nil {
		return *e
	}
	f, ok := s.cfg.Storage.(storage.Failer)
	if !ok {
		return nil
	}
	cause := f.Failed()
	if cause == nil {
		return nil
	}
	e := fmt.Errorf("%w: %w", ErrStorageFailed, cause)
	if s.fatal.CompareAndSwap(nil, &e) {
		s.log.Error("storage failed: this node refuses writes; restart it on a reopened or replaced disk", "err", cause)
		s.errc <- e // capacity 1, sent once
	}
	return *s.fatal.Load()
}
