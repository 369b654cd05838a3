package pebble_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dynamo-kv/dynamo/storage/pebble"
)

// Open a Pebble database as a node's storage; every acknowledged Update is
// fsynced. Pass the Store as dynamo.Config.Storage.
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "pebble-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	st, err := pebble.Open(filepath.Join(dir, "node"), &pebble.Options{CacheSize: 8 << 20})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()
	err = st.Update([]byte("cart"), func(cur []byte) ([]byte, error) {
		return append(bytes.Clone(cur), "book"...), nil // cur is only lent to fn
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	v, err := st.Get([]byte("cart"))
	fmt.Println(string(v), err)
	// Output: book <nil>
}
