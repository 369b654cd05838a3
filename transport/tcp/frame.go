// The tcp wire format: a length prefix, a fixed header, then the payload (DESIGN §8).
package tcp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"sync"
	"time"
)

// A frame on the wire:
//
//	offset  size  field
//	0       4     length of what follows (header and payload), big-endian
//	4       1     version, always wireVersion
//	5       1     kind
//	6       8     request id, big-endian; a reply carries its request's id
//	14      4     the caller's remaining deadline in ms, big-endian; 0 = none
//	18      n     payload
const (
	wireVersion   = 1
	prefixLen     = 4
	headerLen     = 14
	frameOverhead = prefixLen + headerLen
)

// kind says what a frame carries. The values are on the wire:
// ONLY APPEND TO THIS LIST.
type kind uint8

const (
	kindRequest    kind = 1 // a call; the payload is the request
	kindReply      kind = 2 // the payload is the handler's reply
	kindError      kind = 3 // the payload is the text of the handler's error
	kindTooLarge   kind = 4 // the handler's reply exceeded the server's MaxFrameSize
	kindNotServing kind = 5 // the server has no handler yet
	kindBusy       kind = 6 // the server runs Options.MaxInFlight requests; this one did not run
)

// errProtocol is wrapped by the errors that close a connection because the
// peer broke the wire format.
var errProtocol = errors.New("tcp: protocol violation")

// header is a frame's fixed part.
type header struct {
	kind     kind
	id       uint64
	deadline uint32 // ms
}

// putHeader writes the length prefix and h into b, which must hold
// frameOverhead bytes, for a payload of n bytes.
func putHeader(b []byte, h header, n int) {
	_ = b[frameOverhead-1]
	binary.BigEndian.PutUint32(b[0:4], uint32(headerLen+n))
	b[4] = wireVersion
	b[5] = byte(h.kind)
	binary.BigEndian.PutUint64(b[6:14], h.id)
	binary.BigEndian.PutUint32(b[14:18], h.deadline)
}

// frameLength checks the length prefix at the start of buf and returns the
// payload's length, which it bounds by maxPayload.
func frameLength(buf *[frameOverhead]byte, maxPayload int) (int, error) {
	n := binary.BigEndian.Uint32(buf[0:4])
	if n < headerLen {
		return 0, fmt.Errorf("%w: frame length %d is shorter than the %d-byte header", errProtocol, n, headerLen)
	}
	if size := uint64(n) - headerLen; size > uint64(maxPayload) {
		return 0, fmt.Errorf("%w: frame payload of %d bytes exceeds the limit of %d", errProtocol, size, maxPayload)
	}
	return int(n) - headerLen, nil
}

// parseHeader checks the header that follows the prefix in buf.
func parseHeader(buf *[frameOverhead]byte) (header, error) {
	if v := buf[4]; v != wireVersion {
		return header{}, fmt.Errorf("%w: wire version %d, want %d", errProtocol, v, wireVersion)
	}
	return header{
		kind:     kind(buf[5]),
		id:       binary.BigEndian.Uint64(buf[6:14]),
		deadline: binary.BigEndian.Uint32(buf[14:18]),
	}, nil
}

// readFrame reads one frame from br, its prefix and header into hdr: it
// checks the length prefix against maxPayload and the header before reading
// the payload, whose memory it reserves from b as bytes arrive (see
// readPayload). Errors that break the wire format wrap errProtocol; the
// others are br's. The caller releases the bytes reserved.
func readFrame(br *bufio.Reader, hdr *[frameOverhead]byte, maxPayload int, b *budget, deadline time.Time, done <-chan struct{}) (header, []byte, int64, error) {
	if _, err := io.ReadFull(br, hdr[:prefixLen]); err != nil {
		return header{}, nil, 0, err
	}
	n, err := frameLength(hdr, maxPayload)
	if err != nil {
		return header{}, nil, 0, err
	}
	if _, err := io.ReadFull(br, hdr[prefixLen:]); err != nil {
		return header{}, nil, 0, err
	}
	h, err := parseHeader(hdr)
	if err != nil {
		return header{}, nil, 0, err
	}
	payload, reserved, err := readPayload(br, n, b, deadline, done)
	if err != nil {
		return header{}, nil, 0, err
	}
	return h, payload, reserved, nil
}

// A payload that has not arrived whole is read into pooled buffers of
// power-of-two sizes, from 1<<minGrowShift up, and then into one of exactly
// its size once at least half of it has come: the buffers it outgrows are
// reused by later frames instead of left to the collector.
const (
	minGrowShift = 12 // 4 KiB
	maxGrowShift = 23 // 8 MiB: half the default frame limit
)

var growPools [maxGrowShift - minGrowShift + 1]sync.Pool // of *[]byte

// growBuf returns an empty buffer of capacity size, pooled if size is one
// of the pooled powers of two.
func growBuf(size int) []byte {
	if i := growClass(size); i >= 0 {
		if v := growPools[i].Get(); v != nil {
			return (*v.(*[]byte))[:0]
		}
	}
	return make([]byte, 0, size)
}

// putGrow gives an outgrown buffer back to its pool.
func putGrow(buf []byte) {
	if i := growClass(cap(buf)); i >= 0 {
		buf = buf[:0]
		growPools[i].Put(&buf)
	}
}

// growClass is the pool of buffers of capacity size, or -1.
func growClass(size int) int {
	shift := bits.TrailingZeros(uint(size))
	if size != 1<<shift || shift < minGrowShift || shift > maxGrowShift {
		return -1
	}
	return shift - minGrowShift
}

// readPayload reads an n-byte payload from br. Its buffer grows as bytes
// arrive, never past twice what has come (or 4 KiB), and never from n
// alone; with b set, every byte of it is reserved from b first, waiting for
// b until deadline or done. It returns the bytes reserved, which the caller
// releases; on error it has released them.
func readPayload(br *bufio.Reader, n int, b *budget, deadline time.Time, done <-chan struct{}) ([]byte, int64, error) {
	var buf []byte
	var reserved int64
	fail := func(err error) ([]byte, int64, error) {
		putGrow(buf)
		b.release(reserved)
		return nil, 0, err
	}
	for len(buf) < n {
		if len(buf) == cap(buf) {
			if br.Buffered() == 0 {
				if _, err := br.Peek(1); err != nil {
					return fail(unexpectedEOF(err))
				}
			}
			have := len(buf) + br.Buffered()
			size := max(2*cap(buf), 1<<minGrowShift)
			for size < have {
				size *= 2
			}
			size = min(size, n) // exact once half has come
			// The old buffer is idle once copied: reserve the growth only,
			// so that a budget of n bytes can always read n.
			if err := b.reserve(int64(size)-reserved, deadline, done); err != nil {
				return fail(err)
			}
			var grown []byte
			if size == n {
				grown = make([]byte, len(buf), n)
			} else {
				grown = growBuf(size)[:len(buf)]
			}
			copy(grown, buf)
			putGrow(buf)
			buf, reserved = grown, int64(size)
		}
		m, err := br.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil && len(buf) < n {
			return fail(unexpectedEOF(err))
		}
	}
	return buf, reserved, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// deadlineMs encodes the time left before a deadline, rounded up to whole
// milliseconds so the handler never stops before the caller gives up.
func deadlineMs(left time.Duration) uint32 {
	ms := (left + time.Millisecond - 1) / time.Millisecond
	return uint32(min(max(ms, 1), math.MaxUint32))
}
