// fdatasync for the log where the system has none: a full fsync.

//go:build !linux

package bolt

import "os"

// fdatasync flushes f to stable storage.
func fdatasync(f *os.File) error { return f.Sync() }
