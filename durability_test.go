// durability_test.go: §4.5 durable writes: a value acknowledged by a
// bbolt-backed Put survives a SIGKILL of the process right after the ack.
package dynamo

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/membership"
	"github.com/dynamo-kv/dynamo/storage/bolt"
	"github.com/dynamo-kv/dynamo/transport/memnet"
)

const durabilityChildEnv = "DYNAMO_DURABILITY_CHILD_DIR"

// boltCluster starts three Stores on bbolt files in dir, over memnet.
func boltCluster(t testing.TB, dir string) (stores []*Store, closeAll func()) {
	net := memnet.New(memnet.Options{})
	ms := []Member{{ID: "a", Addr: "a"}, {ID: "b", Addr: "b"}, {ID: "c", Addr: "c"}}
	members := membership.NewStatic(ms...)
	var closers []func() error
	for _, m := range ms {
		db, err := bolt.Open(filepath.Join(dir, m.ID+".db"), nil)
		require.NoError(t, err)
		tr, err := net.Listen(m.Addr)
		require.NoError(t, err)
		cfg := DefaultConfig()
		cfg.NodeID, cfg.Partitions = m.ID, 64
		cfg.Transport, cfg.Storage, cfg.Membership = tr, db, members
		s, err := New(cfg)
		require.NoError(t, err)
		stores = append(stores, s)
		closers = append(closers, s.Close, tr.Close, db.Close)
	}
	return stores, func() {
		for _, c := range closers {
			c()
		}
	}
}

// durabilityChild is the child process of TestDurability_SIGKILL (TestMain
// runs it when durabilityChildEnv is set): it writes keys until it is killed,
// printing each one after its Put returned.
func durabilityChild(dir string) {
	stores, _ := boltCluster(panicTB{}, dir)
	out := bufio.NewWriter(os.Stdout)
	for i := 0; i < 100000; i++ {
		key := fmt.Sprintf("key-%d", i)
		if err := stores[i%3].Put(context.Background(), []byte(key), []byte("value-"+key), Context{}); err != nil {
			fmt.Fprintln(out, "error", err)
		} else {
			fmt.Fprintln(out, "acked", key)
		}
		out.Flush()
	}
}

func TestDurability_SIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process; skipped in -short")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), durabilityChildEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	var acked []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		require.False(t, strings.HasPrefix(line, "error"), line)
		if key, ok := strings.CutPrefix(line, "acked "); ok {
			acked = append(acked, key)
			if len(acked) == 200 {
				require.NoError(t, cmd.Process.Signal(syscall.SIGKILL)) // right after an ack
				break
			}
		}
	}
	_ = cmd.Wait()
	require.Len(t, acked, 200)

	stores, closeAll := boltCluster(t, dir)
	defer closeAll()
	for _, key := range acked {
		sibs, _, err := stores[0].Get(context.Background(), []byte(key))
		require.NoError(t, err)
		require.Len(t, sibs, 1, "acknowledged %s is there after SIGKILL", key)
		require.Equal(t, "value-"+key, string(sibs[0].Value))
	}
}

// panicTB is the testing.TB of a child process: it has no test to fail.
type panicTB struct{ testing.TB }

func (panicTB) Helper()                           {}
func (panicTB) Errorf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (panicTB) FailNow()                          { panic("FailNow") }
