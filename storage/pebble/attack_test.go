// attack_test.go: adversarial tests of the Store: empty values across a
// flush, a damaged manifest, and the contracts' edge cases.
package pebble

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/storage"
)

func set(v []byte) func([]byte) ([]byte, error) {
	return func([]byte) ([]byte, error) { return v, nil }
}

// TestEmptyValue_Flushed: a stored empty value stays a present key, in the
// memtable and in a table: Get returns it non-nil, Update's fn sees it
// non-nil, ForEach visits it non-nil, and DeletePrefix deletes it.
func TestEmptyValue_Flushed(t *testing.T) {
	for _, flush := range []bool{false, true} {
		t.Run(fmt.Sprint("flush=", flush), func(t *testing.T) {
			s := open(t, t.TempDir(), nil)
			defer s.Close()
			require.NoError(t, s.Update([]byte("e/1"), set([]byte{})))
			require.NoError(t, s.Update([]byte("e/2"), set([]byte{})))
			if flush {
				require.NoError(t, s.db.Flush())
			}
			v, err := s.Get([]byte("e/1"))
			require.NoError(t, err)
			require.NotNil(t, v, "a stored empty value is present")
			require.Empty(t, v)
			require.NoError(t, s.Update([]byte("e/1"), func(cur []byte) ([]byte, error) {
				require.NotNil(t, cur, "fn sees the stored empty value")
				return nil, nil
			}))
			v, err = s.Get([]byte("e/1"))
			require.NoError(t, err)
			require.Nil(t, v, "deleted")
			seen := 0
			require.NoError(t, s.ForEach([]byte("e/"), func(k, v []byte) error {
				seen++
				require.NotNil(t, v, "ForEach hands a present key a non-nil value")
				return nil
			}))
			require.Equal(t, 1, seen)
			n, err := s.DeletePrefix([]byte("e/"))
			require.NoError(t, err)
			require.Equal(t, 1, n)
			v, err = s.Get([]byte("e/2"))
			require.NoError(t, err)
			require.Nil(t, v, "DeletePrefix deleted the empty value")
		})
	}
}

// files returns dir's files whose names contain part.
func files(t *testing.T, dir, part string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		if strings.Contains(e.Name(), part) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// copyDir copies the files of src into a new temporary directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600))
	}
	return dst
}

// TestCorruptManifest: a flipped byte anywhere in the manifest either
// makes Open fail with storage.ErrCorrupt or leaves every acknowledged
// write readable; it never silently drops data. A torn tail (the manifest
// cut inside its last record, as a crash leaves it) opens.
func TestCorruptManifest(t *testing.T) {
	src := t.TempDir()
	s := open(t, src, nil)
	const rounds, per = 6, 50
	for r := range rounds {
		for i := range per {
			require.NoError(t, s.Update(fmt.Appendf(nil, "k%d-%03d", r, i), set(fmt.Appendf(nil, "v%d", i))))
		}
		require.NoError(t, s.db.Flush()) // one version edit each
	}
	require.NoError(t, s.Close())
	manifests := files(t, src, "MANIFEST-")
	require.Len(t, manifests, 1)
	orig, err := os.ReadFile(manifests[0])
	require.NoError(t, err)

	check := func(t *testing.T, dir string) (corrupt bool) {
		s, err := Open(dir, small)
		if err != nil {
			require.ErrorIs(t, err, storage.ErrCorrupt)
			return true
		}
		defer s.Close()
		for r := range rounds {
			for i := range per {
				v, err := s.Get(fmt.Appendf(nil, "k%d-%03d", r, i))
				require.NoError(t, err)
				require.Equal(t, fmt.Sprintf("v%d", i), string(v), "k%d-%03d", r, i)
			}
		}
		return false
	}
	for k := 1; k < 20; k++ {
		at := len(orig) * k / 20
		t.Run(fmt.Sprint("flip@", at), func(t *testing.T) {
			dir := copyDir(t, src)
			b := bytes.Clone(orig)
			b[at] ^= 0x40
			require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(manifests[0])), b, 0o600))
			check(t, dir)
		})
	}
	t.Run("torn tail", func(t *testing.T) {
		dir := copyDir(t, src)
		require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(manifests[0])), orig[:len(orig)-3], 0o600))
		require.False(t, check(t, dir), "a torn tail is not damage")
	})
}
