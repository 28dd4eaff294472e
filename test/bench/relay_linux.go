package bench

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// spliceChunk is the most one splice(2) moves from a socket into the pipe.
const spliceChunk = 1 << 20

// splicePipe is copyPipe with splice(2): socket → pipe → socket, the bytes counted as
// each splice reports them (net.TCPConn.ReadFrom splices too, but reports its count only
// when the connection ends, and a workload's count is read while keep-alive connections
// stay open). It reports false, having moved nothing, where it cannot splice.
func (r *Relay) splicePipe(dst, src net.Conn) bool {
	sc, ok := src.(syscall.Conn)
	dc, ok2 := dst.(syscall.Conn)
	if !ok || !ok2 {
		return false
	}
	in, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	out, err := dc.SyscallConn()
	if err != nil {
		return false
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return false
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	_, _ = unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, spliceChunk) // a larger pipe where allowed
	for {
		// The pipe is empty here, so EAGAIN can only mean that src has nothing to read:
		// Read then waits for it.
		var n int64
		var serr error
		err := in.Read(func(fd uintptr) bool {
			n, serr = unix.Splice(int(fd), nil, p[1], nil, spliceChunk, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			return !errors.Is(serr, unix.EAGAIN)
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			dst.Close() // as a failed read in copyPipe
			return true
		}
		if n == 0 {
			return true // src ended
		}
		r.count.n.Add(n)
		for n > 0 {
			// The pipe holds n bytes, so EAGAIN can only mean that dst is full.
			var m int64
			var werr error
			err := out.Write(func(fd uintptr) bool {
				m, werr = unix.Splice(p[0], nil, int(fd), nil, int(n), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				return !errors.Is(werr, unix.EAGAIN)
			})
			if err == nil {
				err = werr
			}
			if err != nil {
				return true
			}
			n -= m
		}
	}
}
