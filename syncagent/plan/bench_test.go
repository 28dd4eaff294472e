package plan

import (
	"fmt"
	"testing"
)

// BenchmarkPlan plans a 100,000-file folder in which 1% of the files changed on each
// side: the cost of every re-plan of a large folder.
func BenchmarkPlan(b *testing.B) {
	local, remote, synced := Tree{}, Tree{}, Tree{}
	for d := range 100 {
		dirPath := fmt.Sprintf("dir%03d", d)
		synced[dirPath] = seq(dir(), int64(d+1))
		remote[dirPath], local[dirPath] = synced[dirPath], dir()
		for f := range 1000 {
			q := fmt.Sprintf("%s/file%04d", dirPath, f)
			synced[q] = seq(file("a"), int64(1000+d*1000+f))
			remote[q], local[q] = synced[q], file("a")
			switch f % 100 {
			case 1:
				local[q] = file("local edit")
			case 2:
				remote[q] = seq(file("remote edit"), 1<<30+int64(d*1000+f))
			}
		}
	}
	opts := Options{AgentID: "me", Now: testNow}
	b.ReportAllocs()
	for b.Loop() {
		if ops := Plan(local, remote, synced, opts); len(ops) != 2000 {
			b.Fatalf("%d ops", len(ops))
		}
	}
}

// BenchmarkPlanFirstUpload plans the first upload of a 100,000-file folder: every path
// gets an op.
func BenchmarkPlanFirstUpload(b *testing.B) {
	local := firstUploadTree()
	opts := Options{AgentID: "me", Now: testNow}
	b.ReportAllocs()
	for b.Loop() {
		if ops := Plan(local, Tree{}, Tree{}, opts); len(ops) != 100100 {
			b.Fatalf("%d ops", len(ops))
		}
	}
}

// BenchmarkQuiet checks a 100,000-file folder where nothing changed: the plan of every
// unchanged pass.
func BenchmarkQuiet(b *testing.B) {
	local, remote, synced := Tree{}, Tree{}, Tree{}
	for d := range 1000 {
		dirPath := fmt.Sprintf("w4/d%03d", d)
		synced[dirPath] = seq(dir(), int64(d+1))
		remote[dirPath], local[dirPath] = synced[dirPath], dir()
		for f := range 100 {
			q := fmt.Sprintf("%s/f%05d.bin", dirPath, d*100+f)
			synced[q] = seq(file(fmt.Sprintf("%064x", d*100+f)), int64(1000+d*100+f))
			remote[q], local[q] = synced[q], file(fmt.Sprintf("%064x", d*100+f))
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if !Quiet(local, remote, synced) {
			b.Fatal("not quiet")
		}
	}
}

// BenchmarkPlanWindowFirstUpload plans the first window of the first upload of a
// 100,000-file folder: the cost of each of the agent's plans of a large first sync, and
// what a window holds.
func BenchmarkPlanWindowFirstUpload(b *testing.B) {
	local := firstUploadTree()
	opts := Options{AgentID: "me", Now: testNow}
	for _, window := range []int{4096, 8192, 16384} {
		b.Run(fmt.Sprint(window), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if w := PlanWindow(local, Tree{}, Tree{}, opts, window); len(w.Ops) != window || w.RestFiles != int64(100100-window) {
					b.Fatalf("%d ops, %d more", len(w.Ops), w.RestFiles)
				}
			}
		})
	}
}

// firstUploadTree is a local tree of 100 dirs of 1,000 files that no other tree holds.
func firstUploadTree() Tree {
	local := Tree{}
	for d := range 100 {
		local[fmt.Sprintf("dir%03d", d)] = dir()
		for f := range 1000 {
			local[fmt.Sprintf("dir%03d/file%04d", d, f)] = file("a")
		}
	}
	return local
}
