// Package bolt implements storage.Storage over a bbolt file with group commit (DESIGN §4).
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
// Get and ForEach run in read-only bbolt transactions and never wait for a
// writer. Update hands its request to the Store's single committer
// goroutine and waits. The committer takes the first queued request, then
// whatever else is already queued (without waiting for more, up to
// Options.MaxBatch), and applies them in order in one read-write
// transaction: one commit and one fsync for the whole batch. Under load
// the fsync cost is spread over many writes; an Update on an idle Store
// commits at once, with none of bbolt's DB.Batch delay.
//
// Within a batch each fn sees the results of the fns before it, so
// Updates of one key never lose each other's changes. A fn that returns an
// error fails only its own Update; the others still commit. When the
// commit itself fails, every Update of the batch returns that error.
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
// error matching ErrLocked.
//
// A file that is not a bbolt database, or whose structure is damaged, is
// reported with an error matching storage.ErrCorrupt where bbolt detects
// it: bbolt panics on many damaged pages, and reading through a damaged
// offset can fault outside its memory map; the Store turns both into
// errors. bbolt checksums only its meta pages, at Open; damage elsewhere
// surfaces when the damaged pages are read, and some damage (a bit flipped
// in a value or in a page's overflow count) is not detected at all and
// may make a commit run very long. Check a suspect file offline with the
// bbolt command's check. An Open that fails inside bbolt on a damaged file
// leaves bbolt's memory map of it behind until the process exits.
package bolt
