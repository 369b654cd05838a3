// Test hooks into the Store's committer, for the black-box tests in bolt_test.
package bolt

// SetOnEnqueue makes every later Update call f once its request is queued.
// Call it before the Store is used.
func SetOnEnqueue(s *Store, f func()) { s.onEnqueue = f }

// SetBeforeCommit makes every later batch call f inside its transaction after
// the last fn; an error from f fails the commit. Call it before the Store is
// used.
func SetBeforeCommit(s *Store, f func() error) { s.beforeCommit = f }

// SetOnQuit makes Close call f once it has told the committer to stop, before
// it waits for the batch in flight. Call it before the Store is used.
func SetOnQuit(s *Store, f func()) { s.onQuit = f }

// Abandon stops s as a crash would: the committer and checkpointer stop
// and the files close, but the log is not checkpointed into bbolt, so the
// next Open must replay it. Queued Updates fail with storage.ErrClosed.
func Abandon(s *Store) error {
	s.abandon = true
	return s.Close()
}
