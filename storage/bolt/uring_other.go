// Where there is no io_uring, the log syncs directly.

//go:build !linux

package bolt

import (
	"errors"
	"os"
)

// uring stands in for the Linux io_uring syncer; newURing always fails.
type uring struct{}

func newURing() (*uring, error) { return nil, errors.New("io_uring: not on this system") }

func (*uring) fdatasync(f *os.File) error { return fdatasync(f) }

func (*uring) close() {}
