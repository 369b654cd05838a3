// Reading the log at Open: the records after the checkpoint, told apart from a torn tail, stale records and damage (DESIGN §4).
package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/dynamo-kv/dynamo/storage"
)

// What Open can rely on (see logPos): bbolt holds every change up to
// record C, and record C+1, if it was ever written, starts at offset 0 of
// segment A; the log runs on from there with consecutive LSNs, and may go
// on at offset 0 of the other segment, B (when A filled up before its
// checkpoint ended). Every other intact record in either file is stale: an
// earlier round's, with an LSN of at most C. The committer writes one
// record at a time and syncs it before the next, so only the last record of
// the log can be torn by a crash; and it writes a record only into space
// that the file durably has, with room for another header after it (see
// Store.allocate), so a crash never leaves a segment that ends inside, or
// right at the end of, the log.
//
// So Open reads the run of records from C+1 at A:0 (then at B:0), and
// calls the log damaged when
//   - a record of the run is followed by an intact record whose LSN is
//     above C but not the next one (a record is missing);
//   - the log's last segment ends inside, or right after, the run
//     (truncated);
//   - anywhere in either file past the run there is an intact record whose
//     LSN is above C: it was written after the run's last record, which
//     must then have been synced, so whatever stopped the run is damage,
//     not a torn write.
//
// Anything else past the run (zeros, stale records, a torn record or
// bytes that are no record at all) is the end of the log. The seeded
// checksums make the last test sound: bytes a caller wrote (values) can
// never pass for a record. Damage that leaves no intact record after it
// (a flipped bit in the log's very last record) looks exactly like a torn
// write and is not detected.

// CorruptLogError is returned, wrapped, by Open when a log segment is
// damaged, truncated or missing, so that changes it acknowledged may be
// lost. It matches storage.ErrCorrupt. Options.Salvage opens such a
// Store anyway.
type CorruptLogError struct {
	// Path is the segment file.
	Path string
	// Offset is where, in bytes from the start of the file, the intact log
	// ends.
	Offset int64
	// Detail says what is wrong.
	Detail string
}

func (e *CorruptLogError) Error() string {
	return fmt.Sprintf("log segment %s damaged at offset %d: %s", e.Path, e.Offset, e.Detail)
}

// Unwrap returns storage.ErrCorrupt.
func (e *CorruptLogError) Unwrap() error { return storage.ErrCorrupt }

// scanWindow is how much of a segment a segReader holds at a time.
const scanWindow = 1 << 20

// segReader reads one segment at Open, through a window.
type segReader struct {
	f    file
	path string
	size int64
	seed uint32
	buf  []byte // the window: the file's bytes from bOff
	bOff int64
}

func newSegReader(f file, seed uint32) (*segReader, error) {
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	return &segReader{f: f, path: f.Name(), size: size, seed: seed}, nil
}

// at returns the (up to scanWindow) n bytes at off, fewer at the end of
// the file. They are valid until the next call.
func (r *segReader) at(off int64, n int) ([]byte, error) {
	if off >= r.bOff && off+int64(n) <= r.bOff+int64(len(r.buf)) {
		return r.buf[off-r.bOff:][:n], nil
	}
	if r.buf == nil {
		r.buf = make([]byte, min(scanWindow, max(r.size, recHeader)))
	}
	r.buf = r.buf[:cap(r.buf)]
	m, err := r.f.ReadAt(r.buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		r.buf, r.bOff = r.buf[:0], 0
		return nil, fmt.Errorf("read %s: %w", r.path, err)
	}
	r.buf, r.bOff = r.buf[:m], off
	return r.buf[:min(n, m)], nil
}

// header reads the record header at off: ok when intact, zero when all
// zeros, eof when fewer than recHeader bytes are left.
func (r *segReader) header(off int64) (h recordHeader, ok, zero, eof bool, err error) {
	b, err := r.at(off, recHeader)
	if err != nil || len(b) < recHeader {
		return h, false, false, true, err
	}
	h, ok = parseHeader(b, r.seed)
	if !ok {
		zero = binary.LittleEndian.Uint64(b) == 0 && binary.LittleEndian.Uint64(b[8:]) == 0 &&
			binary.LittleEndian.Uint32(b[16:]) == 0
	}
	return h, ok, zero, false, nil
}

// stop is why a run of records ended.
type stop int

const (
	stopEOF     stop = iota // fewer than a header's bytes left
	stopZero                // a zero header: nothing written there this round
	stopGarbage             // a header that fails its checksum
	stopStale               // an intact record with an LSN of at most C
	stopTorn                // the next record, intact header, payload failing its checksum
	stopCut                 // the next record, intact header, running past the end of the file
	stopAhead               // an intact record with an LSN above C that is not the next
)

// segRun is the run of records at the start of a segment.
type segRun struct {
	recs []logRecord
	end  int64        // where the run stops
	stop stop         // why
	next recordHeader // the intact header at end, for stopStale, stopTorn, stopCut, stopAhead
}

// last returns the LSN of the run's last record, or 0.
func (run *segRun) last() uint64 {
	if len(run.recs) == 0 {
		return 0
	}
	return run.recs[len(run.recs)-1].lsn
}

// skip returns where bytes that may hold other records start after the
// run: past the record at end when its header is intact.
func (run *segRun) skip() int64 {
	switch run.stop {
	case stopStale, stopTorn, stopCut, stopAhead:
		return run.end + recHeader + int64(run.next.size)
	}
	return run.end
}

// readRun reads the records from offset 0 while they are intact and their
// LSNs go on from want; c is the checkpoint's LSN.
func (r *segReader) readRun(c, want uint64) (segRun, error) {
	var run segRun
	for {
		h, ok, zero, eof, err := r.header(run.end)
		switch {
		case err != nil:
			return run, err
		case eof:
			run.stop = stopEOF
			return run, nil
		case zero:
			run.stop = stopZero
			return run, nil
		case !ok:
			run.stop = stopGarbage
			return run, nil
		}
		run.next = h
		switch {
		case h.lsn <= c:
			run.stop = stopStale
			return run, nil
		case h.lsn != want:
			run.stop = stopAhead
			return run, nil
		case run.end+recHeader+int64(h.size) > r.size:
			run.stop = stopCut
			return run, nil
		}
		payload := make([]byte, h.size)
		if _, err := r.f.ReadAt(payload, run.end+recHeader); err != nil && !errors.Is(err, io.EOF) {
			return run, fmt.Errorf("read %s: %w", r.path, err)
		}
		if crc32c(r.seed, payload) != h.dataCRC {
			run.stop = stopTorn
			return run, nil
		}
		run.recs = append(run.recs, logRecord{lsn: h.lsn, payload: payload})
		run.end += recHeader + int64(h.size)
		want++
	}
}

// scanFrom looks for intact records from off to the end of the file. It
// returns the first whose LSN is above c (found is false when there is
// none) and the highest LSN of any. It steps over the records it finds and
// over runs of zeros, and otherwise moves a byte at a time.
func (r *segReader) scanFrom(off int64, c uint64) (at int64, lsn uint64, found bool, top uint64, err error) {
	for off+recHeader <= r.size {
		h, ok, zero, _, err := r.header(off)
		if err != nil {
			return 0, 0, false, top, err
		}
		switch {
		case ok:
			top = max(top, h.lsn)
			if h.lsn > c && !found {
				at, lsn, found = off, h.lsn, true
			}
			off += recHeader + int64(h.size)
		case zero:
			// A header's bytes are never all zero (its LSN is not): the
			// next one starts at most recHeader-1 bytes before the next
			// nonzero byte.
			nz, err := r.nonZero(off)
			if err != nil {
				return 0, 0, false, top, err
			}
			off = max(off+1, nz-(recHeader-1))
		default:
			off++
		}
	}
	return at, lsn, found, top, nil
}

// nonZero returns the offset of the first nonzero byte at or after off, or
// the file's size.
func (r *segReader) nonZero(off int64) (int64, error) {
	for off < r.size {
		b, err := r.at(off, scanWindow)
		if err != nil {
			return 0, err
		}
		if len(b) == 0 {
			break
		}
		i := 0
		for ; i+8 <= len(b) && binary.LittleEndian.Uint64(b[i:]) == 0; i += 8 {
		}
		for ; i < len(b) && b[i] == 0; i++ {
		}
		if i < len(b) {
			return off + int64(i), nil
		}
		off += int64(len(b))
	}
	return r.size, nil
}

// logScan is what Open found in the log.
type logScan struct {
	recs []logRecord // the run of records after the checkpoint
	top  uint64      // the highest LSN of any intact record in either file
}

// scanLog reads the log after pos: the run of records from pos.lsn+1 at
// offset 0 of segment pos.seg, and on at offset 0 of the other segment,
// and checks the rest of both files for records that show the run was cut
// short. On damage it returns a *CorruptLogError along with what it read,
// for Options.Salvage.
func scanLog(segs [2]*segReader, pos logPos) (logScan, error) {
	c := pos.lsn
	a, b := segs[pos.seg], segs[pos.seg^1]
	runA, err := a.readRun(c, c+1)
	if err != nil {
		return logScan{}, err
	}
	// The log goes on in B when A's run ends where nothing was written
	// after it, and B starts with the next record: intact, or torn.
	runB := segRun{}
	inB := false
	switch runA.stop {
	case stopEOF, stopZero, stopGarbage, stopStale:
		if len(runA.recs) > 0 {
			if runB, err = b.readRun(c, runA.last()+1); err != nil {
				return logScan{}, err
			}
			inB = len(runB.recs) > 0 || runB.stop == stopTorn || runB.stop == stopCut
		}
	}
	ls := logScan{recs: append(runA.recs, runB.recs...)}
	ls.top = max(c, runA.last(), runB.last())
	for _, run := range []*segRun{&runA, &runB} {
		if run.skip() > run.end { // the intact header the run stopped at
			ls.top = max(ls.top, run.next.lsn)
		}
	}
	var firstErr error
	last, lastRun := a, &runA
	if inB {
		last, lastRun = b, &runB
	}
	switch {
	case runA.stop == stopAhead:
		firstErr = gapError(a, &runA, c)
	case inB && runB.stop == stopAhead:
		firstErr = gapError(b, &runB, c)
	case lastRun.stop == stopEOF || lastRun.stop == stopCut:
		detail := fmt.Sprintf("the file ends (at %d bytes) inside the log", last.size)
		if lastRun.stop == stopCut {
			detail = fmt.Sprintf("record %d runs past the end of the file (%d bytes)", lastRun.next.lsn, last.size)
		}
		firstErr = &CorruptLogError{Path: last.path, Offset: lastRun.end, Detail: "truncated: " + detail}
	}

	// Past the run, both files are read to the end: for evidence of damage,
	// and for the highest LSN they hold, which a salvaged log must move
	// past.
	fromB := int64(0)
	if inB {
		fromB = runB.skip()
	}
	for _, sc := range []struct {
		r    *segReader
		from int64
		run  *segRun // the run the file holds, if any
	}{{a, runA.skip(), &runA}, {b, fromB, &runB}} {
		at, lsn, found, top, err := sc.r.scanFrom(sc.from, c)
		if err != nil {
			return logScan{}, err
		}
		ls.top = max(ls.top, top)
		if !found || firstErr != nil {
			continue
		}
		where, run := sc.r, sc.run
		if sc.r == b && !inB {
			where, run = a, &runA
		}
		firstErr = &CorruptLogError{Path: where.path, Offset: run.end, Detail: fmt.Sprintf(
			"the records after checkpoint %d end after record %d (%s), but record %d is at offset %d of %s",
			c, max(c, run.last()), stopNames[run.stop], lsn, at, sc.r.path)}
	}
	return ls, firstErr
}

// gapError reports an intact record at the end of run whose LSN is above
// the checkpoint's, c, but not the next one.
func gapError(r *segReader, run *segRun, c uint64) error {
	due := max(c, run.last()) + 1
	detail := fmt.Sprintf("record %d is where record %d is due: the records between are missing", run.next.lsn, due)
	if run.next.lsn < due {
		detail = fmt.Sprintf("record %d is where record %d is due: a record repeats", run.next.lsn, due)
	}
	return &CorruptLogError{Path: r.path, Offset: run.end, Detail: detail}
}

var stopNames = [...]string{
	stopEOF: "end of file", stopZero: "zeros", stopGarbage: "a damaged or torn header",
	stopStale: "a stale record", stopTorn: "a damaged or torn record", stopCut: "a truncated record",
	stopAhead: "a later record",
}
