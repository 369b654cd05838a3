// identity.go: DESIGN §2 a node's identity in its storage: the incarnation
// of its actor (Riak kv679), and the cluster name, node ID and partition
// count the storage is pinned to.
package dynamo

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
)

var (
	metaIncarnation = []byte("mincarnation")
	metaPartitions  = []byte("mpartitions")
	metaIdentity    = []byte("midentity")
)

// identityFormat is the first byte of the identity record.
const identityFormat = 1

// lostWrites is implemented by a Storage that may have come up without some
// writes it acknowledged (storage.Lossy: one opened in a salvaging mode on a
// damaged log). A node on such a storage takes a new incarnation, so that it
// never reissues a dot of its earlier life, and takes the lost writes back
// from its peers.
type lostWrites interface {
	LostWrites() bool
}

// lostWritesClearer is implemented by a lostWrites storage that can record,
// durably, that the loss has been made up for.
type lostWritesClearer interface {
	ClearLostWrites() error
}

// loadIncarnation pins the storage to the cluster name, node ID and
// partition count of s.cfg, and returns the node's incarnation: the stored
// one, or a new random one on empty storage or on a storage that reports
// lost writes (DESIGN §2, Riak kv679), so that a node that lost data never
// reissues the dots of its earlier life.
func (s *Store) loadIncarnation() (string, error) {
	st := s.cfg.Storage
	if err := s.pinIdentity(); err != nil {
		return "", fmt.Errorf("dynamo: open storage: %w", err)
	}
	fresh := make([]byte, 6)
	if _, err := io.ReadFull(s.entropy(), fresh); err != nil {
		return "", fmt.Errorf("dynamo: incarnation entropy: %w", err)
	}
	lossy := false
	if l, ok := st.(lostWrites); ok && l.LostWrites() {
		lossy = true
	}
	var inc []byte
	err := st.Update(metaIncarnation, func(cur []byte) ([]byte, error) {
		if cur != nil && !lossy {
			if len(cur) != 6 {
				return nil, fmt.Errorf("%w: incarnation record of %d bytes", ErrCorrupt, len(cur))
			}
			inc = slices.Clone(cur)
			return cur, nil
		}
		inc = fresh // first start, storage lost, or writes lost: a new actor
		return fresh, nil
	})
	if err != nil {
		return "", fmt.Errorf("dynamo: open storage: %w", err)
	}
	if lossy {
		s.log.Warn("storage reports lost writes: took a new incarnation; the lost writes come back from the other replicas",
			"incarnation", hex.EncodeToString(inc))
		if c, ok := st.(lostWritesClearer); ok {
			if err := c.ClearLostWrites(); err != nil {
				return "", fmt.Errorf("dynamo: open storage: clear lost writes: %w", err)
			}
		}
	}
	return hex.EncodeToString(inc), nil
}

// pinIdentity records the cluster name, node ID and partition count in empty
// storage, and fails with ErrInvalidConfig when the storage was created
// under others. Storage written before the identity was recorded takes the
// configured one.
func (s *Store) pinIdentity() error {
	st := s.cfg.Storage
	var want [4]byte
	binary.BigEndian.PutUint32(want[:], uint32(s.cfg.Partitions))
	err := st.Update(metaPartitions, func(cur []byte) ([]byte, error) {
		if cur == nil {
			return want[:], nil
		}
		if len(cur) != 4 {
			return nil, fmt.Errorf("%w: partitions record of %d bytes", ErrCorrupt, len(cur))
		}
		if got := binary.BigEndian.Uint32(cur); got != uint32(s.cfg.Partitions) {
			return nil, fmt.Errorf("%w: storage was created with Partitions %d, Config.Partitions is %d", ErrInvalidConfig, got, s.cfg.Partitions)
		}
		return cur, nil
	})
	if err != nil {
		return err
	}
	rec := encodeIdentity(s.cfg.Cluster, s.cfg.NodeID)
	return st.Update(metaIdentity, func(cur []byte) ([]byte, error) {
		if cur == nil {
			return rec, nil
		}
		if bytes.Equal(cur, rec) {
			return cur, nil
		}
		cluster, node, err := decodeIdentity(cur)
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: storage belongs to node %q of cluster %q; Config has node %q of cluster %q",
			ErrInvalidConfig, node, cluster, s.cfg.NodeID, s.cfg.Cluster)
	})
}

func encodeIdentity(cluster, node string) []byte {
	b := []byte{identityFormat}
	b = binary.AppendUvarint(b, uint64(len(cluster)))
	b = append(b, cluster...)
	return append(b, node...)
}

func decodeIdentity(b []byte) (cluster, node string, err error) {
	if len(b) < 2 || b[0] != identityFormat {
		return "", "", fmt.Errorf("%w: identity record of %d bytes", ErrCorrupt, len(b))
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > uint64(len(b)-1-k) {
		return "", "", fmt.Errorf("%w: malformed identity record", ErrCorrupt)
	}
	rest := b[1+k:]
	return string(rest[:n]), string(rest[n:]), nil
}

// entropy is the Store's source of randomness: Config.Rand or crypto/rand.
func (s *Store) entropy() io.Reader {
	if s.cfg.Rand != nil {
		return s.cfg.Rand
	}
	return rand.Reader
}
