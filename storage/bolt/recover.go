// Open's recovery: the log segments are checked, their records after the last checkpoint replayed into bbolt, or the damage reported (DESIGN §4).
package bolt

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/dynamo-kv/dynamo/storage"
)

// meta is what the metadata bucket says.
type meta struct {
	pos     logPos
	hasPos  bool   // logKey is there: the current format
	checked bool   // valueFormatKey is there
	lost    bool   // lostKey is there
	legacy  uint64 // legacyLSNKey
}

// readMeta reads the metadata bucket.
func (s *Store) readMeta() (m meta, err error) {
	err = s.view(func(tx *bbolt.Tx) error {
		mb := tx.Bucket(metaBucket)
		if mb == nil {
			return errNoBucket
		}
		if v := mb.Get(logKey); v != nil {
			if m.pos, err = parseLogPos(v); err != nil {
				return err
			}
			m.hasPos = true
		}
		for _, f := range []struct {
			key []byte
			set *bool
		}{{valueFormatKey, &m.checked}, {lostKey, &m.lost}} {
			if v := mb.Get(f.key); v != nil {
				if err := checkFlag(f.key, v); err != nil {
					return err
				}
				*f.set = true
			}
		}
		m.legacy, err = legacyLSN(mb)
		return err
	}, nil)
	return m, err
}

// writeMeta runs fn on the metadata bucket in a transaction of its own.
func (s *Store) writeMeta(fn func(meta *bbolt.Bucket) error) error {
	return s.update(func(tx *bbolt.Tx) error {
		mb := tx.Bucket(metaBucket)
		if mb == nil {
			return errNoBucket
		}
		return fn(mb)
	})
}

// putPos returns a checkpoint's last step: recording p as the log position.
func putPos(p logPos) func(meta *bbolt.Bucket) error {
	return func(meta *bbolt.Bucket) error { return meta.Put(logKey, appendLogPos(nil, p)) }
}

// recover makes sure the buckets exist, brings a file of an earlier version
// up to date, and opens and replays the log (see replay).
func (s *Store) recover(o Options) error {
	// A log next to a database file with no metadata bucket is one bbolt
	// knows nothing of: refused, or with Salvage, not read.
	orphaned := false
	check := func() error { return s.orphanedLog(o) }
	if o.Salvage {
		check = func() error {
			orphaned = s.orphanedLog(o) != nil
			s.lostNew = orphaned
			return nil
		}
	}
	if err := ensureBucket(s.db, check); err != nil {
		return err
	}
	m, err := s.readMeta()
	if err != nil {
		return err
	}
	if err := s.loadSumSpec(); err != nil {
		return err
	}
	s.zero.chunk = min(1<<20, max(o.LogSize/4, 4096))
	s.zero.zeros = make([]byte, s.zero.chunk)
	if !m.hasPos {
		if err := s.upgrade(o, m, orphaned); err != nil {
			return err
		}
		if m, err = s.readMeta(); err != nil {
			return err
		}
	}
	return s.replay(o, m)
}

// openSegments opens both log segments, creating the missing ones unless
// needed says the log has carried changes into bbolt: a missing segment
// is then damage, reported as a *CorruptLogError, or, with
// Options.Salvage, created, and the Store marked as having lost writes.
// It syncs the directory when it created a segment.
func (s *Store) openSegments(o Options, needed bool, c uint64) (created bool, err error) {
	paths := segmentPaths(s.path)
	for _, p := range paths {
		_, err := o.fs.Stat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if needed && !o.Salvage {
				return false, &CorruptLogError{Path: p, Detail: fmt.Sprintf(
					"the file is missing, and bbolt holds changes up to record %d that went through the log", c)}
			}
			created = true
			s.lostNew = s.lostNew || needed
		case err != nil:
			return false, err
		}
	}
	for i, p := range paths {
		if s.logs[i], err = o.fs.OpenFile(p, os.O_RDWR|os.O_CREATE, o.FileMode); err != nil {
			return false, err
		}
	}
	if created {
		// A new segment's directory entry must be durable before any
		// record in it is acknowledged.
		if err := o.fs.SyncDir(filepath.Dir(s.path)); err != nil {
			return false, err
		}
	}
	return created, nil
}

// replay reads the log (see logscan.go), copies the records after the
// last checkpoint into bbolt in one checkpoint, so that the Store starts
// with an empty log, and sets the Store up to write the next record where
// the log position says. On damage it fails with a *CorruptLogError and
// changes nothing, unless o.Salvage: then it keeps the run of intact
// records before the damage, records that writes may be lost, and moves
// the log position past every record either segment holds.
func (s *Store) replay(o Options, m meta) error {
	if s.logs[0] == nil { // upgrade has not opened them
		if _, err := s.openSegments(o, true, m.pos.lsn); err != nil {
			return err
		}
	}
	var readers [2]*segReader
	for i, f := range s.logs {
		r, err := newSegReader(f, m.pos.seed)
		if err != nil {
			return err
		}
		readers[i] = r
	}
	ls, err := scanLog(readers, m.pos)
	if err != nil {
		var cle *CorruptLogError
		if !errors.As(err, &cle) || !o.Salvage {
			return err
		}
		s.lostNew = true
	}
	mem := newMemtable()
	for i, r := range ls.recs {
		if err := decodeEntries(r.payload, mem.put); err != nil {
			err = fmt.Errorf("%w: record %d: %w", storage.ErrCorrupt, r.lsn, err)
			if !o.Salvage {
				return err
			}
			ls.recs, s.lostNew = ls.recs[:i], true
			mem = newMemtable()
			for _, r := range ls.recs {
				_ = decodeEntries(r.payload, mem.put) // each parsed above
			}
			break
		}
	}
	if err := s.at(stepRecoverRead); err != nil {
		return err
	}
	for i, f := range s.logs {
		size, err := s.prepareSegment(f, readers[i].size)
		if err != nil {
			return err
		}
		s.zero.allocated[i] = size
	}
	if s.lostNew {
		if err := s.writeMeta(func(mb *bbolt.Bucket) error { return mb.Put(lostKey, flagValue(lostKey)) }); err != nil {
			return err
		}
	}
	// The next record takes an LSN above every intact header either file
	// holds, so that none of them can pass for a record after it: a torn
	// record's (the LSN after the run's, which a crash left behind; the
	// new records may not overwrite it before the next crash) and, after
	// Salvage, the records past the damage.
	pos := m.pos
	if len(ls.recs) > 0 {
		pos.lsn = ls.recs[len(ls.recs)-1].lsn
	}
	pos.lsn = max(pos.lsn, ls.top)
	switch {
	case !mem.empty():
		if err := s.checkpoint(mem, putPos(pos), false); err != nil {
			return err
		}
	case pos != m.pos:
		err := s.update(func(tx *bbolt.Tx) error {
			meta := tx.Bucket(metaBucket)
			if meta == nil {
				return errNoBucket
			}
			if err := putPos(pos)(meta); err != nil {
				return err
			}
			if s.sumSpec.Load() == nil {
				return nil
			}
			return stampSums(tx)
		})
		if err != nil {
			return err
		}
	}
	s.seed, s.cur, s.nextLSN = pos.seed, pos.seg, pos.lsn+1
	s.lostWrites.Store(m.lost || s.lostNew)
	return nil
}

// prepSize is the least a segment holds once Open is done with it.
const prepSize = 4096

// prepareSegment extends a segment shorter than prepSize with zeros,
// durably, so that a segment is never shorter than a record header (see
// logscan.go; the zeroer takes it from there), and returns its size. Zeros
// past the end never overwrite a record, so this is safe before the log is
// replayed.
func (s *Store) prepareSegment(f file, size int64) (int64, error) {
	if size >= prepSize {
		return size, nil
	}
	if err := s.at(stepRecoverPrepare); err != nil {
		return 0, err
	}
	if err := writeFull(f, make([]byte, prepSize-size), size); err != nil {
		return 0, fmt.Errorf("bolt: extend %s: %w", f.Name(), err)
	}
	if err := f.Datasync(); err != nil {
		return 0, fmt.Errorf("bolt: sync %s: %w", f.Name(), err)
	}
	return prepSize, nil
}

// upgrade brings a file without a log position (one of an earlier
// version, or a new one) to the current format, in the steps legacy.go
// lists. An orphaned log is emptied unread.
func (s *Store) upgrade(o Options, m meta, orphaned bool) error {
	if _, err := s.openSegments(o, m.legacy > 0, m.legacy); err != nil {
		return err
	}
	var recs []logRecord
	if !orphaned {
		var err error
		if recs, err = readLogV1(s.logs, m.legacy); err != nil {
			var cle *CorruptLogError
			if !errors.As(err, &cle) || !o.Salvage {
				return err
			}
			s.lostNew = true
		}
	}
	mem := newMemtable()
	for _, r := range recs {
		if err := decodeEntries(r.payload, mem.put); err != nil {
			return fmt.Errorf("%w: record %d: %w", storage.ErrCorrupt, r.lsn, err)
		}
	}
	if s.lostNew {
		if err := s.writeMeta(func(mb *bbolt.Bucket) error { return mb.Put(lostKey, flagValue(lostKey)) }); err != nil {
			return err
		}
	}
	if !m.checked {
		if err := s.update(convertValues); err != nil {
			return fmt.Errorf("bolt: add checksums to the values: %w", err)
		}
	}
	lsn := m.legacy
	if len(recs) > 0 {
		lsn = recs[len(recs)-1].lsn
		last := binary.BigEndian.AppendUint64(nil, lsn)
		if err := s.checkpoint(mem, func(mb *bbolt.Bucket) error { return mb.Put(legacyLSNKey, last) }, false); err != nil {
			return err
		}
	}
	for _, f := range s.logs {
		if err := f.Truncate(0); err != nil {
			return fmt.Errorf("bolt: empty %s: %w", f.Name(), err)
		}
		if _, err := s.prepareSegment(f, 0); err != nil {
			return err
		}
	}
	var seed [4]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return err
	}
	pos := logPos{lsn: lsn, seed: binary.LittleEndian.Uint32(seed[:])}
	return s.writeMeta(func(mb *bbolt.Bucket) error {
		if err := mb.Put(logKey, appendLogPos(nil, pos)); err != nil {
			return err
		}
		return mb.Delete(legacyLSNKey)
	})
}

// openDB opens the bbolt file, turning a lock timeout into ErrLocked and
// bad meta pages, or a bbolt panic while reading them, into
// storage.ErrCorrupt.
//
// A panic inside bbolt.Open leaves its memory map of the file behind, as
// there is no handle to unmap it with; the lock is released and the file
// closed, so the damaged file can be moved aside or repaired.
func openDB(path string, o Options) (db *bbolt.DB, err error) {
	var file *os.File // captured so the lock can be released after a panic
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			if file != nil {
				unlock(file)
				_ = file.Close()
			}
			db, err = nil, fmt.Errorf("bolt: open %s: %w: bbolt panicked: %v", path, storage.ErrCorrupt, p)
		}
	}()
	db, err = bbolt.Open(path, o.FileMode, &bbolt.Options{
		Timeout:      o.Timeout,
		FreelistType: bbolt.FreelistMapType,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("bolt: open %s: %w by another Store or process (gave up after %s): %w",
			path, ErrLocked, o.Timeout, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("bolt: open %s: %w: %w", path, storage.ErrCorrupt, err)
	default:
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
}

// ensureBucket creates the Store's bucket in a new file, committing only if
// it is missing.
// orphanedLog fails when a segment exists although bbolt has no metadata
// bucket: the log of a file that bbolt lost (or whose metadata is gone).
func (s *Store) orphanedLog(o Options) error {
	for _, p := range segmentPaths(s.path) {
		if _, err := o.fs.Stat(p); err == nil || !errors.Is(err, os.ErrNotExist) {
			return &CorruptLogError{Path: p, Detail: "the segment exists, but the database has no record of the log" +
				" (a new or damaged database file next to an old log)"}
		}
	}
	return nil
}

// ensureBucket creates the Store's buckets in a new file (or one written
// before the log), committing only if one is missing. Before it creates
// the metadata bucket, it calls check, and fails with check's error.
func ensureBucket(db *bbolt.DB, check func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: bbolt panicked: %v", storage.ErrCorrupt, p)
		}
	}()
	var data, meta bool
	if err := db.View(func(tx *bbolt.Tx) error {
		data, meta = tx.Bucket(bucketName) != nil, tx.Bucket(metaBucket) != nil
		return nil
	}); err != nil {
		return err
	}
	if data && meta {
		return nil
	}
	if !meta {
		if err := check(); err != nil {
			return err
		}
	}
	return db.Update(func(tx *bbolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketName); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(metaBucket)
		return err
	})
}
