// Test of descriptor exhaustion on a real listener: existing connections go on, and accepting resumes once descriptors free up.
package tcp_test

import (
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/transport/tcp"
)

// exhaustDescriptors lowers this process's descriptor limit to a few above
// those open, and opens files until none is left. It returns a function
// that frees one descriptor, and undoes everything when the test ends. Not
// for parallel tests: the whole process runs out of descriptors.
func exhaustDescriptors(t *testing.T) (freeOne func()) {
	t.Helper()
	var orig syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig))
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	low := orig
	low.Cur = min(uint64(len(entries))+32, orig.Max)
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low))
	var files []*os.File
	t.Cleanup(func() {
		for _, f := range files {
			_ = f.Close()
		}
		require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig))
	})
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			require.True(t, errors.Is(err, syscall.EMFILE), "opening files failed with %v", err)
			break
		}
		files = append(files, f)
		require.Less(t, len(files), 10_000, "the descriptor limit was not lowered")
	}
	return func() {
		require.NotEmpty(t, files)
		require.NoError(t, files[len(files)-1].Close())
		files = files[:len(files)-1]
	}
}

func TestServer_SurvivesDescriptorExhaustion(t *testing.T) {
	server := listen(t, tcp.Options{})
	require.NoError(t, server.Serve(echo))
	existing := dialRaw(t, server.Addr())
	roundTrip(t, existing, 1, []byte("before"))

	freeOne := exhaustDescriptors(t)
	freeOne()                            // room for the caller's own socket only
	waiting := dialRaw(t, server.Addr()) // the kernel queues it; the server cannot accept it
	eventually(t, func() bool { return server.Stats().AcceptErrors >= 2 }, "accept to fail, then fail again after a back-off")
	roundTrip(t, existing, 2, []byte("during")) // existing connections are served

	freeOne()
	roundTrip(t, waiting, 1, []byte("after")) // accepted once a descriptor is free
}
