// Fuzzing the frame reader (DESIGN §8): any byte stream a peer sends yields whole frames or a clean error, never memory beyond what arrived.
package tcp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// frameBytes encodes one frame as a peer would send it.
func frameBytes(k kind, id uint64, payload []byte) []byte {
	b := make([]byte, frameOverhead, frameOverhead+len(payload))
	putHeader(b, header{kind: k, id: id, deadline: 100}, len(payload))
	return append(b, payload...)
}

// chunked returns data in pieces of at most n bytes a read, as a socket
// may.
type chunked struct {
	data []byte
	n    int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	m := copy(p[:min(len(p), c.n)], c.data)
	c.data = c.data[m:]
	return m, nil
}

// FuzzReadFrame reads frames from arbitrary bytes, arriving in pieces of
// any size, against a read budget of twice the bytes sent (plus 4 KiB):
// every frame read is exactly what its prefix announced, and the stream
// ends with an error of the wire format or of a short read, never with the
// budget spent (which would mean memory taken for bytes that never came),
// never with a panic, and with every reserved byte released.
func FuzzReadFrame(f *testing.F) {
	deep := append(bytes.Repeat([]byte{0x91}, 4096), 0xc0) // msgpack arrays nested 4096 deep
	huge := []byte{0xdd, 0xff, 0xff, 0xff, 0xff}           // a msgpack array of 2^32-1 items
	two := append(frameBytes(kindRequest, 1, []byte("a")), frameBytes(kindRequest, 2, deep)...)
	announced := frameBytes(kindRequest, 3, make([]byte, 10))
	binary.BigEndian.PutUint32(announced, 1<<20) // 1 MiB announced, 10 bytes sent
	tooLarge := bytes.Clone(announced)
	binary.BigEndian.PutUint32(tooLarge, 16<<20) // past the frame limit
	for _, seed := range [][]byte{
		frameBytes(kindRequest, 1, nil),
		frameBytes(kindReply, 7, []byte("hello")),
		two,
		frameBytes(kindRequest, 4, huge),
		announced,
		tooLarge,
		announced[:frameOverhead-3],         // a truncated header
		{0, 0, 0, 5, wireVersion},           // a length shorter than the header
		{0, 0, 0, headerLen, 9, 1, 0, 0, 0}, // another wire version
		{0xff, 0xff, 0xff, 0xff},            // 4 GiB announced
	} {
		f.Add(seed, uint8(7))
	}
	f.Fuzz(func(t *testing.T, data []byte, piece uint8) {
		const maxPayload = 1 << 20
		b := newBudget(int64(2*len(data)) + 1<<minGrowShift)
		br := bufio.NewReaderSize(&chunked{data: data, n: int(piece) + 1}, 16)
		var hdr [frameOverhead]byte
		done := make(chan struct{})
		past := time.Now() // a budget that runs out fails at once
		off := 0
		for {
			h, payload, reserved, err := readFrame(br, &hdr, maxPayload, b, past, done)
			if err != nil {
				require.False(t, errors.Is(err, errBudget), "read budget spent on %d bytes sent: %v", len(data), err)
				require.True(t, errors.Is(err, errProtocol) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF), "unexpected error %v", err)
				require.Zero(t, b.reserved(), "reservation kept after an error")
				return
			}
			n := int(binary.BigEndian.Uint32(data[off:])) - headerLen
			require.Len(t, payload, n)
			require.True(t, bytes.Equal(data[off+frameOverhead:off+frameOverhead+n], payload), "payload differs from the bytes sent")
			require.Equal(t, kind(data[off+5]), h.kind)
			require.Equal(t, binary.BigEndian.Uint64(data[off+6:]), h.id)
			require.Equal(t, int64(n), reserved, "a whole frame holds exactly its size")
			b.release(reserved)
			require.Zero(t, b.reserved())
			off += frameOverhead + n
		}
	})
}
