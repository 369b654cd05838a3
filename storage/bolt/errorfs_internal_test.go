// errorFS: a vfs that fails chosen operations on the log's files (after pebble's vfs/errorfs), for the fault tests.
package bolt

import (
	"os"
	"sync"
)

// faultOp is an operation errorFS may fail.
type faultOp int

const (
	opOpen faultOp = iota
	opWrite
	opSync
	opTruncate
	opSyncDir
)

// fault is what an injected failure does: the operation returns err; a
// write first writes short bytes of its data (a short write) and, with lie
// set, returns no error at all.
type fault struct {
	err   error
	short int
	lie   bool
}

// injector picks the fault of an operation on the file name, given a
// write's data; ok is false when the operation goes through.
type injector func(op faultOp, name string, p []byte) (f fault, ok bool)

// errorFS wraps a vfs and fails the operations its injector picks. The
// injector may be changed while the Store runs.
type errorFS struct {
	inner vfs
	mu    sync.Mutex
	inj   injector
}

func newErrorFS() *errorFS { return &errorFS{inner: osFS{}} }

// set installs inj (nil: no faults).
func (e *errorFS) set(inj injector) {
	e.mu.Lock()
	e.inj = inj
	e.mu.Unlock()
}

func (e *errorFS) pick(op faultOp, name string, p []byte) (fault, bool) {
	e.mu.Lock()
	inj := e.inj
	e.mu.Unlock()
	if inj == nil {
		return fault{}, false
	}
	return inj(op, name, p)
}

func (e *errorFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	if f, ok := e.pick(opOpen, name, nil); ok {
		return nil, f.err
	}
	f, err := e.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &errorFile{file: f, fs: e}, nil
}

func (e *errorFS) Stat(name string) (os.FileInfo, error) { return e.inner.Stat(name) }

func (e *errorFS) SyncDir(dir string) error {
	if f, ok := e.pick(opSyncDir, dir, nil); ok {
		return f.err
	}
	return e.inner.SyncDir(dir)
}

// errorFile is a file of an errorFS.
type errorFile struct {
	file
	fs *errorFS
}

func (f *errorFile) WriteAt(p []byte, off int64) (int, error) {
	flt, ok := f.fs.pick(opWrite, f.Name(), p)
	if !ok {
		return f.file.WriteAt(p, off)
	}
	n := 0
	if flt.short > 0 {
		var err error
		if n, err = f.file.WriteAt(p[:min(flt.short, len(p))], off); err != nil {
			return n, err
		}
	}
	if flt.lie {
		return n, nil
	}
	return n, flt.err
}

func (f *errorFile) Datasync() error {
	if flt, ok := f.fs.pick(opSync, f.Name(), nil); ok {
		return flt.err
	}
	return f.file.Datasync()
}

func (f *errorFile) Truncate(size int64) error {
	if flt, ok := f.fs.pick(opTruncate, f.Name(), nil); ok {
		return flt.err
	}
	return f.file.Truncate(size)
}

// allZero reports whether p holds only zeros: a write of the zeroer, or of
// Open extending a segment.
func allZero(p []byte) bool {
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return len(p) > 0
}
