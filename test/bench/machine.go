package bench

import (
	"crypto/sha256"
	"fmt"
	"os"
	"time"
)

// MachineSpeed is what a run measures of the machine before its workloads. The targets
// are ratios against peers whose costs lie elsewhere than ours (rsync's mostly in the
// kernel, ours in hashing and in flushing to the disk), so the ratios move from one
// machine of a kind to the next: two runs compare only beside these figures.
type MachineSpeed struct {
	// SHA256MBps is SHA-256 over bytes in memory, in MB/s (10^6 bytes).
	SHA256MBps float64 `json:"sha256MBps"`
	// FsyncWriteMBps is a file of FsyncWriteBytes written to the work dir in pieces of
	// 1 MiB and fsynced, in MB/s.
	FsyncWriteMBps float64 `json:"fsyncWriteMBps"`
	// FsyncWriteBytes is the size of that file.
	FsyncWriteBytes int64 `json:"fsyncWriteBytes"`
}

// Sizes of MeasureMachine's two measurements: large enough to take a few tenths of a
// second, so that the clock's and the first page faults' share is small.
const (
	machineHashBytes = 256 << 20
	machineDiskBytes = 256 << 20
)

// MeasureMachine measures the machine's speed (MachineSpeed), writing a temp file in
// dir.
func MeasureMachine(dir string) (MachineSpeed, error) {
	return measureMachine(dir, machineHashBytes, machineDiskBytes)
}

func measureMachine(dir string, hashBytes, diskBytes int) (MachineSpeed, error) {
	buf := NewGen(0).Bytes(1 << 20) // random: a file system that compresses gains nothing
	var m MachineSpeed
	h := sha256.New()
	start := time.Now()
	for n := 0; n < hashBytes; n += len(buf) {
		h.Write(buf)
	}
	h.Sum(nil)
	m.SHA256MBps = mbps(hashBytes, time.Since(start))

	f, err := os.CreateTemp(dir, "machine-*.tmp")
	if err != nil {
		return m, fmt.Errorf("measure the disk: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	start = time.Now()
	for n := 0; n < diskBytes; n += len(buf) {
		if _, err := f.Write(buf); err != nil {
			return m, fmt.Errorf("measure the disk: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return m, fmt.Errorf("measure the disk: %w", err)
	}
	m.FsyncWriteMBps, m.FsyncWriteBytes = mbps(diskBytes, time.Since(start)), int64(diskBytes)
	return m, nil
}

func mbps(n int, d time.Duration) float64 {
	return float64(n) / 1e6 / max(d.Seconds(), 1e-9)
}

// String is the figures as the rendered report states them.
func (m MachineSpeed) String() string {
	return fmt.Sprintf("SHA-256 %.0f MB/s, a file of %d MiB written and fsynced %.0f MB/s", m.SHA256MBps, m.FsyncWriteBytes>>20, m.FsyncWriteMBps)
}
