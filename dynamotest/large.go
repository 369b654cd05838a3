// large.go: the large-values fault: clients write values near the size limit,
// so every batch that crosses the network (anti-entropy exchanges, hint
// deliveries, transfers, read repair) meets the frame limit (§4.6, §4.7).
package dynamotest

import (
	"bytes"
	"fmt"
	"sync/atomic"

	"github.com/vmihailenco/msgpack/v5"
)

// With SimConfig.LargeValues the stores run with these limits and the network
// with this frame size: a batch holds one or two large values, so a round of
// a few keys already needs several messages.
const (
	largeMaxValue = 128 << 10
	largeMaxState = 512 << 10
	largeFrame    = 1 << 20
	// largePad is the size the large-values fault pads a set's encoding to.
	largePad = largeMaxValue - 1<<10
)

// setCodec encodes a set with msgpack, followed by zero bytes up to pad
// bytes when pad is set (the large-values fault). Decoding reads the set and
// ignores the filler.
type setCodec struct{ pad *atomic.Int64 }

func (c setCodec) Marshal(v []int64) ([]byte, error) {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return nil, err
	}
	if n := int(c.pad.Load()); n > len(b) {
		b = append(b, make([]byte, n-len(b))...)
	}
	return b, nil
}

func (setCodec) Unmarshal(data []byte) ([]int64, error) {
	var v []int64
	err := msgpack.NewDecoder(bytes.NewReader(data)).Decode(&v)
	return v, err
}

// largeValues is the nemesis action for SimConfig.LargeValues: it switches
// the padding of written values on (it expires like a network fault) or off.
func (s *sim) largeValues() string {
	if s.pad.Load() > 0 {
		s.pad.Store(0)
		return "values small again"
	}
	s.pad.Store(largePad)
	s.largeAt = s.now()
	return fmt.Sprintf("values padded to %d bytes", largePad)
}

// expireLarge switches the padding off once it has lasted faultTTL.
func (s *sim) expireLarge() {
	if s.pad.Load() > 0 && s.now()-s.largeAt >= faultTTL {
		s.pad.Store(0)
		s.logf("nemesis: large values expired")
		s.decide("expire large values")
	}
}
