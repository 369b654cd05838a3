// Releasing the file lock of a bbolt.Open that panicked, where bbolt does not lock with flock(2).

//go:build windows || plan9 || solaris || aix || android

package bolt

import "os"

// unlock does nothing here: closing the file releases bbolt's lock, except
// while a leaked memory map of it remains, which then keeps the file locked
// until the process exits.
func unlock(*os.File) {}
