// logattrs.go: the structured fields every log line uses: node (set on the
// Store's logger), peer (the other node concerned), partition, and
// key_hash, never a key's bytes (keys may hold user data).
package dynamo

import (
	"log/slog"
	"strconv"
)

// keyAttr names key in a log line by its hash: the same key always logs
// the same key_hash, and its bytes never reach the log.
func keyAttr(key []byte) slog.Attr {
	return slog.String("key_hash", strconv.FormatUint(hashBytes(key), 16))
}

// storedKeyAttrs names a storage key (a space byte, and for data and hints
// the partition) by its space and hash.
func storedKeyAttrs(k []byte) []any {
	if len(k) == 0 {
		return []any{keyAttr(k)}
	}
	return []any{slog.Int("space", int(k[0])), keyAttr(k)}
}
