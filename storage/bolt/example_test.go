// Examples: a damaged value found by its checksum and discarded; a data directory that lost its log, refused and then salvaged.
package bolt_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dynamo-kv/dynamo/storage"
	"github.com/dynamo-kv/dynamo/storage/bolt"
)

// A value damaged on disk is never served: Get reports the key in a
// storage.CorruptError, and DiscardCorrupt deletes it so that the key can
// be written again (a Dynamo replica takes it back from its peers).
func ExampleStore_DiscardCorrupt() {
	dir, _ := os.MkdirTemp("", "bolt-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "node.db")

	s, _ := bolt.Open(path, nil)
	_ = s.Update([]byte("cart"), func([]byte) ([]byte, error) { return []byte("3 apples"), nil })
	_ = s.Close() // checkpoints the value into the database file

	// A bit flips on disk.
	b, _ := os.ReadFile(path)
	i := bytes.Index(b, []byte("3 apples"))
	b[i] ^= 0x01
	_ = os.WriteFile(path, b, 0o600)

	s, _ = bolt.Open(path, nil)
	defer s.Close()
	_, err := s.Get([]byte("cart"))
	var ce *storage.CorruptError
	fmt.Println(errors.As(err, &ce), errors.Is(err, storage.ErrCorrupt), string(ce.Keys[0]))
	discarded, _ := s.DiscardCorrupt([]byte("cart"))
	v, err := s.Get([]byte("cart"))
	fmt.Println(discarded, v == nil, err)
	// Output:
	// true true cart
	// true true <nil>
}

// A data directory whose log is gone may have lost acknowledged writes:
// Open refuses it, naming the segment; Options.Salvage opens it, and the
// Store reports LostWrites until ClearLostWrites.
func ExampleOptions_salvage() {
	dir, _ := os.MkdirTemp("", "bolt-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "node.db")

	s, _ := bolt.Open(path, nil)
	_ = s.Update([]byte("k"), func([]byte) ([]byte, error) { return []byte("v"), nil })
	_ = s.Close()
	_ = os.Remove(path + ".wal0")

	_, err := bolt.Open(path, nil)
	var cle *bolt.CorruptLogError
	fmt.Println(errors.Is(err, storage.ErrCorrupt), errors.As(err, &cle), filepath.Base(cle.Path))

	s, err = bolt.Open(path, &bolt.Options{Salvage: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	v, _ := s.Get([]byte("k"))
	fmt.Println(string(v), s.LostWrites())
	_ = s.ClearLostWrites()
	fmt.Println(s.LostWrites())
	// Output:
	// true true node.db.wal0
	// v true
	// false
}
