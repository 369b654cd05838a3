// The files the Store writes itself (its log segments), behind an interface so that tests can inject faults (DESIGN §4).
package bolt

import (
	"io"
	"os"
)

// A Store reaches its log segments only through a vfs: in production the
// operating system's files (osFS); in tests a wrapper that fails chosen
// operations, as pebble's vfs/errorfs does. bbolt opens its own file and
// has no such layer; the checkpoint's steps have hook points instead (see
// step).
type vfs interface {
	// OpenFile opens name like os.OpenFile.
	OpenFile(name string, flag int, perm os.FileMode) (file, error)
	// Stat reports on name like os.Stat.
	Stat(name string) (os.FileInfo, error)
	// SyncDir makes the entries created in dir durable.
	SyncDir(dir string) error
}

// file is an open log segment.
type file interface {
	io.ReaderAt
	// WriteAt writes p at off; a result n < len(p) with a nil error is
	// treated as a failed write.
	WriteAt(p []byte, off int64) (n int, err error)
	// Datasync flushes the file's data, and the metadata needed to read it
	// back (its size), to stable storage.
	Datasync() error
	// Truncate changes the file's size.
	Truncate(size int64) error
	// Size returns the file's size.
	Size() (int64, error)
	// Name returns the path the file was opened with.
	Name() string
	Close() error
}

// osFS is the operating system's file system.
type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Stat(name string) (os.FileInfo, error) { return os.Stat(name) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// osFile is an *os.File; the Store syncs it through its io_uring when it
// has one.
type osFile struct{ *os.File }

func (f osFile) Datasync() error { return fdatasync(f.File) }

func (f osFile) Size() (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// writeFull writes all of p at off, turning a short write without an error
// into io.ErrShortWrite.
func writeFull(f file, p []byte, off int64) error {
	n, err := f.WriteAt(p, off)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return err
}

// step names a point in a checkpoint, or in Open's recovery, where a test
// hook (Options.hook) may inject a failure: the step then fails as if the
// operation it names had failed.
type step int

const (
	// stepRotate: the committer is about to switch segments and hand the
	// full one to the checkpointer.
	stepRotate step = iota
	// stepChunkBegin: a checkpoint transaction is about to begin.
	stepChunkBegin
	// stepChunkPut: a checkpoint transaction has written its keys, and not
	// yet the log position (which only the last one writes).
	stepChunkPut
	// stepChunkCommit: a checkpoint transaction is about to commit; a
	// failure here rolls it back, as a failed bbolt commit does.
	stepChunkCommit
	// stepChunkDone: a checkpoint transaction has committed.
	stepChunkDone
	// stepCheckpointDone: a checkpoint has committed its last transaction
	// and is about to release the memtable it copied.
	stepCheckpointDone
	// stepRecoverRead: Open has read the log and is about to apply it.
	stepRecoverRead
	// stepRecoverPrepare: Open is about to zero-extend a short segment.
	stepRecoverPrepare
	numSteps
)

var stepNames = [numSteps]string{
	"rotate", "chunk begin", "chunk put", "chunk commit", "chunk done", "checkpoint done",
	"recover read", "recover prepare",
}

func (st step) String() string {
	if st >= 0 && st < numSteps {
		return stepNames[st]
	}
	return "step?"
}
