// Package bolt implements storage.Storage over a bbolt file, with a write-ahead log and group commit in front of it (DESIGN §4).
//
// # Basics
//
// Open a Store over one file; every key lives in one bucket:
//
//	s, err := bolt.Open(filepath.Join(dir, "node.db"), nil)
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//	err = s.Update([]byte("k"), func(cur []byte) ([]byte, error) {
//		return append(bytes.Clone(cur), '!'), nil
//	})
//
// # Writes: log first, bbolt later
//
// A synced bbolt commit costs two fdatasyncs and a page write per touched
// B+tree page, wherever they are. So Update does not commit to bbolt.
// It hands its request to the Store's single committer goroutine, which
// takes the first queued request and whatever else is queued (up to
// Options.MaxBatch), runs their fns in order, appends their results to a
// write-ahead log as one record and fdatasyncs it: one sequential write
// and one sync for the whole batch. Only then are the changes published to
// an in-memory table (the memtable) and the Updates return. Under load the
// committer first yields the processor a few times, so that goroutines
// about to call Update (a replica's handler decoding its write) join the
// batch; with nothing else runnable the yield returns at once, so an idle
// Store commits at once.
//
// The log is two segment files next to the bbolt file, path+".wal0" and
// path+".wal1". When the current one passes Options.LogSize, the committer
// switches to the other, and a background checkpointer copies the full
// segment's changes into bbolt in key order, in transactions of 256 KiB
// paced to keep just ahead of the new segment's filling, and then records
// the log position it reached in bbolt; the segment is then free for reuse.
// A segment keeps its blocks when reused, and in its first round it is
// zeroed ahead of the records in the background, so appends overwrite
// allocated blocks and their fdatasync need not commit the file system's
// journal.
//
// On Linux the fdatasync goes through an io_uring, so the committing
// goroutine parks (its processor runs other goroutines) while the kernel
// syncs, instead of holding the processor in a blocking system call; see
// Options.DirectSync.
//
// Get reads the memtable, then the table being checkpointed, then bbolt.
// ForEach merges the memtables with a bbolt read transaction taken
// together, so it sees one consistent state. Close checkpoints everything
// into bbolt; Open replays the log records after the last checkpoint (a
// crash leaves some) and checkpoints them at once.
//
// # Damage
//
// Every value kept in bbolt carries a CRC-32C of its key and bytes (bbolt
// itself checksums only its meta pages), checked on every read. A value
// that fails it is never served: Get and Update of that key fail with a
// *storage.CorruptError (Update without calling fn), ForEach skips it and
// reports it once it has visited every other key, Stats.CorruptReads
// counts it, and DiscardCorrupt deletes it so the key can be written
// again (a Dynamo replica then takes it back from its peers).
//
// Each log record has a checksum over its header and one over its
// payload, both seeded with a random number of the Store's, and bbolt
// keeps, with each checkpoint, where the next record starts. A crash can
// only tear the last record of the log, and the committer writes a record
// only into space the segment durably has, so Open tells a torn tail (a
// write that was never acknowledged: dropped) from damage: an intact
// record past the end of the readable log, a record missing, a segment
// that ends inside the log, a segment missing while bbolt holds changes
// that went through the log, or a log next to a database file that has no
// record of it. Damage fails Open with a *CorruptLogError (matching
// storage.ErrCorrupt) that names the segment and the byte offset where the
// intact log ends, and changes nothing. Options.Salvage opens such a
// Store anyway with the intact records before the damage; LostWrites then
// reports, across reopens until ClearLostWrites, that acknowledged Updates
// may be missing.
//
// What Open and Get do with each kind of damage:
//
//	damage                                   Open                       Get
//	value byte flipped in the bbolt file     opens                      CorruptError for that key only
//	bbolt page structure or meta damaged     ErrCorrupt (where bbolt    ErrCorrupt for what reads the page
//	                                         detects it)
//	log torn at its end by a crash           opens, drops the torn      the acknowledged values
//	                                         (unacknowledged) record
//	log byte flipped / zeroed mid-log        *CorruptLogError           -
//	log record missing or repeated           *CorruptLogError           -
//	log truncated inside the log             *CorruptLogError           -
//	log segment(s) deleted                   *CorruptLogError           -
//	database file lost, log kept             *CorruptLogError           -
//	any of the four above, with Salvage      opens, LostWrites          the values up to the damage
//	damage to only the log's last record     opens (looks torn)         without that record's changes
//
// A file written by an earlier version (bare values, an older log format)
// is converted at its first Open, in one transaction, after its log is
// replayed as that version did.
//
// Within a batch each fn sees the results of the fns before it, so
// Updates of one key never lose each other's changes. A fn that returns an
// error fails only its own Update; the others still commit. When the log
// write or sync fails, every Update of the batch returns that error and
// the Store fails every later Update with an error matching ErrFailed: the
// state of a file whose fsync failed is unknown. Reopen it to go on from
// what is durable.
//
// # Memory
//
// The memtables hold the values written since the last checkpoint: about
// up to twice Options.LogSize (default 64 MiB), less when keys are
// rewritten. Writers wait if a segment fills before the previous
// checkpoint ends.
//
// # Caveats
//
// Updates are serialised through one goroutine and fns run on it: a slow
// fn delays every writer, and fn must not call the Store. A fn that panics
// skips its own write and the panic is raised again in the goroutine that
// called Update.
//
// ForEach holds a read transaction for its whole walk; a long walk keeps
// the pages it reads from being reused, so the file may grow meanwhile. fn
// must not call Update (bbolt may need to remap the file, which waits for
// the read transaction to end).
//
// Only one Store may have a file open at a time; bbolt enforces this with
// an exclusive file lock, and Open gives up after Options.Timeout with an
// error matching ErrLocked. The log files are only opened once the lock is
// held.
//
// A file that is not a bbolt database, or whose structure is damaged, is
// reported with an error matching storage.ErrCorrupt where bbolt detects
// it: bbolt panics on many damaged pages, and reading through a damaged
// offset can fault outside its memory map; the Store turns both into
// errors. bbolt checksums only its meta pages, at Open; damage to its
// other pages surfaces when they are read (a flipped value byte, by the
// Store's own checksum), and some (a page's overflow count) may make a
// commit run very long. Check a suspect file offline with the bbolt
// command's check. An Open that fails inside bbolt on a damaged file
// leaves bbolt's memory map of it behind until the process exits.
//
// Damage confined to the last record of the log looks exactly like a
// write torn by a crash, and its changes are dropped without an error.
// Salvage does not apply to damage inside the bbolt file.
package bolt
