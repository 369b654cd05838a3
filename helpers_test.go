// helpers_test.go: shortcuts for tests into one node's replica, each
// computing the key's partition as a request would.
package dynamo

// localState is this node's state of key, hints included (replica.read).
func (s *Store) localState(key []byte) (state, error) {
	return s.rep.read(partitionOf(key, s.cfg.Partitions), key)
}

// storedKey is key's data key in this node's storage.
func (s *Store) storedKey(key []byte) []byte { return dataKey(partitionOf(key, s.cfg.Partitions), key) }

// mergeLocal merges st into this node's state of key (replica.merge).
func (s *Store) mergeLocal(key []byte, st state) error {
	return s.rep.merge(partitionOf(key, s.cfg.Partitions), key, st)
}

// hintLocal keeps st as a hint for target (replica.storeHint).
func (s *Store) hintLocal(target string, key []byte, st state) error {
	return s.rep.hints.put(target, partitionOf(key, s.cfg.Partitions), key, st)
}
