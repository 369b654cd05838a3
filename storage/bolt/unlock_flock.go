// Releasing the file lock of a bbolt.Open that panicked, where bbolt locks with flock(2).

//go:build !windows && !plan9 && !solaris && !aix && !android

package bolt

import (
	"os"
	"syscall"
)

// unlock releases the flock that bbolt took on f. Closing f alone is not
// enough when bbolt has already mapped the file: the mapping keeps the open
// file description, and with it the lock, alive.
func unlock(f *os.File) {
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
