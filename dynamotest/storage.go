// storage.go: a deliberately broken Storage that acknowledges updates it never applies (promise 1 broken on purpose).
package dynamotest

import (
	"bytes"
	"time"

	"github.com/dynamo-kv/dynamo/storage"
)

// ackBeforeCommit acknowledges a fraction of the updates to workload keys
// without applying them, like a disk that acknowledges before it commits and
// then crashes. Other keys (the node's incarnation, for one) are untouched.
// Which updates are lost is a hash of the seed, the node, the key and the
// fake time, so it does not depend on goroutine interleaving.
type ackBeforeCommit struct {
	storage.Storage
	seed     uint64
	node     string
	prob     float64
	suffixes [][]byte // workload keys
}

var _ storage.Storage = (*ackBeforeCommit)(nil)

// Update runs fn on the current value and, for a lost update, returns nil
// without storing the result.
func (b *ackBeforeCommit) Update(key []byte, fn func(current []byte) ([]byte, error)) error {
	if !b.lose(key) {
		return b.Storage.Update(key, fn)
	}
	cur, err := b.Storage.Get(key)
	if err != nil {
		return err
	}
	_, err = fn(cur)
	return err
}

func (b *ackBeforeCommit) lose(key []byte) bool {
	workload := false
	for _, s := range b.suffixes {
		if bytes.HasSuffix(key, s) {
			workload = true
			break
		}
	}
	if !workload {
		return false
	}
	h := mix64(b.seed ^ hashString(b.node) ^ mix64(hashString(string(key))) ^ mix64(uint64(time.Now().UnixNano())))
	return float64(h>>11)/(1<<53) < b.prob
}
