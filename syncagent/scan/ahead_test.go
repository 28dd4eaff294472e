package scan

import (
	"context"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncagent/trees"
)

// waitListed waits until ahead has listed n dirs (it then has listed the whole folder).
func waitListed(t *testing.T, a *Ahead, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); len(a.items) < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("listed %d dirs ahead, want %d", len(a.items), n)
		}
	}
}

func sortedUpdates(ups []Update) []Update {
	sort.Slice(ups, func(i, j int) bool { return ups[i].Path < ups[j].Path })
	return ups
}

// A full scan that takes its listings from ListAhead finds what one that lists every
// dir itself finds, with the ignore patterns unchanged (it then uses every listing made
// ahead) and with patterns changed in between, each way (it then lists the dirs from
// the first one that differs itself).
func TestFullSweepAheadFindsWhatFullFinds(t *testing.T) {
	for _, tc := range []struct {
		name          string
		before, after string // an ignored top-level dir, "" for none
		wantAligned   bool
	}{
		{name: "same patterns", before: "b", after: "b", wantAligned: true},
		{name: "no patterns", wantAligned: true},
		{name: "a dir now ignored", before: "", after: "b"},
		{name: "a dir no longer ignored", before: "b", after: ""},
		{name: "another dir ignored", before: "a", after: "c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, s, l := setup(t)
			for _, p := range []string{"a/x", "a/sub/y", "b/z", "b/deep/er/w", "c/v", "top", TempPrefix + "t", "b/" + TempPrefix + "u"} {
				put(t, filepath.Join(dir, filepath.FromSlash(p)), "content of "+p)
			}
			var ignored atomic.Value
			ignored.Store(tc.before)
			s.Ignore = func(rel string, _ bool) bool {
				d := ignored.Load().(string)
				return d != "" && (rel == d || strings.HasPrefix(rel, d+"/"))
			}
			// The reference: the patterns of the scan, every dir listed by the scan.
			ignored.Store(tc.after)
			ref := trees.New(0)
			var refTemp []string
			wantUps, err := s.FullSweep(context.Background(), ref, &Sweep{Temp: func(p string, _ bool) { refTemp = append(refTemp, p) }, IgnoredDir: func(string) {}})
			if err != nil {
				t.Fatal(err)
			}
			ignored.Store(tc.before)
			ahead := s.ListAhead()
			listed := map[string]int{"": 7, "a": 5, "b": 4, "c": 6}[tc.before] // of ., a, a/sub, b, b/deep, b/deep/er, c
			waitListed(t, ahead, listed)
			ignored.Store(tc.after)
			var temp []string
			ups, err := s.FullSweepAhead(context.Background(), l, &Sweep{Temp: func(p string, _ bool) { temp = append(temp, p) }, IgnoredDir: func(string) {}}, ahead)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(l, ref) || !reflect.DeepEqual(sortedUpdates(ups), sortedUpdates(wantUps)) || !reflect.DeepEqual(temp, refTemp) {
				t.Fatalf("with listings made ahead:\n%v\n%v\n%v\nwithout:\n%v\n%v\n%v", l, ups, temp, ref, wantUps, refTemp)
			}
			if aligned := !ahead.off; aligned != tc.wantAligned {
				t.Fatalf("took every listing made ahead: %v, want %v", aligned, tc.wantAligned)
			}
			select {
			case <-ahead.done:
			default:
				t.Fatal("the scan did not stop the listing")
			}
		})
	}
}
