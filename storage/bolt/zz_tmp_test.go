package bolt_test

import (
	"errors"
	"github.com/dynamo-kv/dynamo/storage"
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/dynamo-kv/dynamo/storage/bolt"
)

func TestTmpDamage(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	for i := range 200 {
		set(t, s, string(rune('a'+i%26))+string(bytes.Repeat([]byte{'x'}, i)), string(bytes.Repeat([]byte{'v'}, 100+i*10)))
	}
	s.Close()
	clean, _ := os.ReadFile(s.Path())
	t.Logf("pages %d", len(clean)/4096)
	for seed := range 40 {
		rng := rand.New(rand.NewPCG(uint64(seed), 1))
		for page := 2; page < len(clean)/4096; page++ {
			damaged := bytes.Clone(clean)
			for range 8 {
				i := page*4096 + rng.IntN(64)
				damaged[i] ^= 1 << rng.IntN(8)
			}
			path := filepath.Join(dir, "d.db")
			os.WriteFile(path, damaged, 0o600)
			s, err := bolt.Open(path, nil)
			if err != nil {
				if !errors.Is(err, storage.ErrCorrupt) {
					t.Logf("non-corrupt open error page %d: %v", page, err)
				}
				continue
			}
			var errs []error
			_, err = s.Get([]byte("a"))
			errs = append(errs, err)
			errs = append(errs, s.ForEach(nil, func(_, _ []byte) error { return nil }))
			errs = append(errs, s.Update([]byte("new"), func([]byte) ([]byte, error) { return []byte("v"), nil }))
			for _, e := range errs {
				if e != nil && !errors.Is(e, storage.ErrCorrupt) {
					t.Logf("non-corrupt error page %d: %v", page, e)
				}
			}
			s.Close()
		}
	}
}
