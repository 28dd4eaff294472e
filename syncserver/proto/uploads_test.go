package proto

import (
	"reflect"
	"testing"
)

func TestUploadRunsExpandAgainstTheirBase(t *testing.T) {
	base := []Block{{Hash: "a", Size: 1}, {Hash: "b", Size: 2}, {Hash: "c", Size: 3}}
	x := Block{Hash: "x", Size: 9}
	r := UploadBlocksResponse{Runs: []UploadRun{{BaseFrom: 1, Count: 2}, {Blocks: []Block{x}}, {BaseFrom: 0, Count: 1}}}
	got, err := r.Expand(base)
	if want := []Block{base[1], base[2], x, base[0]}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Expand = %v, %v; want %v", got, err, want)
	}
	plain := UploadBlocksResponse{Blocks: []Block{x}}
	if got, err := plain.Expand(nil); err != nil || !reflect.DeepEqual(got, []Block{x}) {
		t.Fatalf("Expand of plain blocks = %v, %v", got, err)
	}
	for _, run := range []UploadRun{
		{BaseFrom: 2, Count: 2},        // past the base's end
		{BaseFrom: -1, Count: 1},       // before its start
		{},                             // neither
		{Blocks: []Block{x}, Count: 1}, // both
		{BaseFrom: 0, Count: 4},        // longer than the base
	} {
		r := UploadBlocksResponse{Runs: []UploadRun{run}}
		if got, err := r.Expand(base); err == nil {
			t.Errorf("Expand of run %+v = %v; want an error", run, got)
		}
	}
}
