package execute

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/syncedfolder/synced-folder/internal/testserver"
)

// BenchmarkDownloadSmallFiles lands 2,000 files of 1–16 KiB in 20 dirs on a fresh
// folder, from a real in-process server: the reader's side of a first sync of small
// files (W1 in docs/benchmarks.md), per file.
func BenchmarkDownloadSmallFiles(b *testing.B) {
	url, _ := testserver.Start(b, b.TempDir(), nil)
	const files = 2000
	up := newEnvOn(b, url)
	for i := range files {
		data := make([]byte, 1024+(i*7919)%(15*1024))
		for j := range data {
			data[j] = byte(i*31 + j)
		}
		writeFile(b, filepath.Join(up.dir, fmt.Sprintf("w1/d%02d/f%05d.bin", i/100, i)), string(data))
	}
	up.rescan(b)
	if out := up.run(b, up.plan()); out.Failed != 0 {
		b.Fatalf("upload: %+v", out)
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		down := newEnvOn(b, url)
		down.pull(b)
		down.rescan(b)
		ops := down.plan()
		b.StartTimer()
		if out := down.run(b, ops); out.Failed != 0 || out.Done < files {
			b.Fatalf("download: %+v", out)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*files), "µs/file")
}
