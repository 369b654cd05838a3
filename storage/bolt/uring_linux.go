// fdatasync through io_uring on Linux, so a log sync does not hold one of the Go scheduler's processors (DESIGN §4).

//go:build linux

package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A goroutine in a blocking system call keeps its P (one of GOMAXPROCS)
// until the runtime's monitor notices and hands the P to another thread,
// and a log fdatasync blocks for 100-300 µs. With three nodes' committers
// syncing on two cores, Ps spent much of their time parked in fdatasync
// while runnable goroutines waited: dynamo-bench's mixed workload did
// 11.6k ops/s with fdatasync, and 17.9k with a 150 µs sleep (which parks
// the goroutine and frees its P) standing in for it.
//
// So the committer submits the fdatasync to an io_uring, whose kernel
// workers do the blocking sync, and waits for the completion on an eventfd
// that the Go runtime's network poller watches: the goroutine parks and
// its P runs other goroutines meanwhile. Where io_uring is not available
// (an old kernel, a seccomp profile that forbids it) newURing fails and
// the Store syncs directly.

// io_uring ABI constants (include/uapi/linux/io_uring.h).
const (
	ioringOffSQRing       = 0
	ioringOffCQRing       = 0x8000000
	ioringOffSQEs         = 0x10000000
	ioringFeatSingleMmap  = 1 << 0
	ioringOpFsync         = 3
	ioringFsyncDatasync   = 1 << 0
	ioringRegisterEventfd = 4
	ioringEnterGetEvents  = 1 << 0

	sqeSize = 64
	cqeSize = 16
)

// uringParams is struct io_uring_params.
type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  struct {
		head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
		userAddr                                                        uint64
	}
	cqOff struct {
		head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
		userAddr                                                        uint64
	}
}

// uring is a minimal io_uring for one fdatasync at a time.
type uring struct {
	mu    sync.Mutex
	fd    int
	efd   *os.File // eventfd signalled on each completion; read through the poller
	sqMem []byte   // SQ ring (and CQ ring, with IORING_FEAT_SINGLE_MMAP)
	cqMem []byte
	sqes  []byte

	sqTail, sqMask, cqHead, cqTail, cqMask *uint32
	sqArray                                []uint32
	cqes                                   []byte
	seq                                    uint64
}

// newURing sets up a ring with an eventfd for completions.
func newURing() (u *uring, err error) {
	var p uringParams
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	u = &uring{fd: int(fd)}
	defer func() {
		if err != nil {
			u.close()
		}
	}()
	if p.features&ioringFeatSingleMmap == 0 {
		return nil, errors.New("io_uring: kernel lacks IORING_FEAT_SINGLE_MMAP")
	}
	size := max(int(p.sqOff.array)+int(p.sqEntries)*4, int(p.cqOff.cqes)+int(p.cqEntries)*cqeSize)
	if u.sqMem, err = unix.Mmap(u.fd, ioringOffSQRing, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("io_uring: mmap rings: %w", err)
	}
	u.cqMem = u.sqMem
	if u.sqes, err = unix.Mmap(u.fd, ioringOffSQEs, int(p.sqEntries)*sqeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("io_uring: mmap sqes: %w", err)
	}
	at := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	u.sqTail, u.sqMask = at(u.sqMem, p.sqOff.tail), at(u.sqMem, p.sqOff.ringMask)
	u.sqArray = unsafe.Slice(at(u.sqMem, p.sqOff.array), p.sqEntries)
	u.cqHead, u.cqTail, u.cqMask = at(u.cqMem, p.cqOff.head), at(u.cqMem, p.cqOff.tail), at(u.cqMem, p.cqOff.ringMask)
	u.cqes = u.cqMem[p.cqOff.cqes : int(p.cqOff.cqes)+int(p.cqEntries)*cqeSize]

	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("io_uring: eventfd: %w", err)
	}
	u.efd = os.NewFile(uintptr(efd), "io_uring-eventfd") // non-blocking: read through the poller
	if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(u.fd), ioringRegisterEventfd,
		uintptr(unsafe.Pointer(&efd)), 1, 0, 0); errno != 0 {
		return nil, fmt.Errorf("io_uring: register eventfd: %w", errno)
	}
	return u, nil
}

// fdatasync syncs f's data through the ring, parking the calling goroutine
// (not its thread and P) until the kernel reports completion.
func (u *uring) fdatasync(f *os.File) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.seq++
	tail := atomic.LoadUint32(u.sqTail)
	idx := tail & *u.sqMask
	sqe := u.sqes[idx*sqeSize : (idx+1)*sqeSize]
	clear(sqe)
	sqe[0] = ioringOpFsync
	binary.LittleEndian.PutUint32(sqe[4:], uint32(f.Fd()))
	binary.LittleEndian.PutUint32(sqe[28:], ioringFsyncDatasync)
	binary.LittleEndian.PutUint64(sqe[32:], u.seq)
	u.sqArray[idx] = idx
	atomic.StoreUint32(u.sqTail, tail+1)
	for {
		// The fsync cannot complete without blocking, so the kernel hands it
		// to a worker and io_uring_enter returns at once.
		n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(u.fd), 1, 0, 0, 0, 0)
		if errno == unix.EINTR || errno == unix.EAGAIN || errno == unix.EBUSY {
			continue
		}
		if errno != 0 {
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
		if n == 1 {
			break
		}
	}
	var buf [8]byte
	for {
		head := atomic.LoadUint32(u.cqHead)
		if head != atomic.LoadUint32(u.cqTail) {
			cqe := u.cqes[(head&*u.cqMask)*cqeSize:]
			seq := binary.LittleEndian.Uint64(cqe[0:])
			res := int32(binary.LittleEndian.Uint32(cqe[8:]))
			atomic.StoreUint32(u.cqHead, head+1)
			if seq != u.seq {
				continue // not ours: cannot happen with one sync in flight
			}
			if res < 0 {
				return unix.Errno(-res)
			}
			return nil
		}
		if _, err := u.efd.Read(buf[:]); err != nil {
			return fmt.Errorf("io_uring: wait: %w", err)
		}
	}
}

// close releases the ring. The caller makes sure no fdatasync is running.
func (u *uring) close() {
	if u.efd != nil {
		_ = u.efd.Close()
	}
	if u.sqes != nil {
		_ = unix.Munmap(u.sqes)
	}
	if u.sqMem != nil {
		_ = unix.Munmap(u.sqMem)
	}
	_ = unix.Close(u.fd)
}
