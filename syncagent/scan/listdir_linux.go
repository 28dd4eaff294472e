package scan

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// listDir reads the names of the open dir f with getdents64(2), with the type and inode
// number each record carries. "." and ".." are left out.
func listDir(f *os.File) ([]dirName, error) {
	var out []dirName
	buf := make([]byte, 32<<10)
	fd := int(f.Fd())
	for {
		n, err := unix.ReadDirent(fd, buf)
		if err != nil {
			return nil, &os.PathError{Op: "getdents64", Path: f.Name(), Err: err}
		}
		if n <= 0 {
			return out, nil
		}
		// struct linux_dirent64: d_ino u64, d_off s64, d_reclen u16, d_type u8, d_name
		// (NUL-terminated, padded to the record's length).
		for b := buf[:n]; len(b) > 0; {
			if len(b) < 19 {
				return nil, fmt.Errorf("getdents64 %q: short record", f.Name())
			}
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				return nil, fmt.Errorf("getdents64 %q: record length %d", f.Name(), reclen)
			}
			name := b[19:reclen]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			if s := string(name); s != "." && s != ".." {
				out = append(out, dirName{name: s, regular: b[18] == unix.DT_REG, ino: binary.NativeEndian.Uint64(b[0:8])})
			}
			b = b[reclen:]
		}
	}
}
