package chaos

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/internal/e2eproc"
	"github.com/syncedfolder/synced-folder/syncagent/ignore"
	"github.com/syncedfolder/synced-folder/syncagent/state"
	"github.com/syncedfolder/synced-folder/syncserver/blobs"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
	"github.com/syncedfolder/synced-folder/syncserver/store/postgres"
	"github.com/syncedfolder/synced-folder/syncserver/store/sqlite"
)

// record is one content version a script step wrote into one agent's folder.
type record struct {
	step       int
	agent      string
	path       string
	sha        string
	size       int64
	superseded bool // the same agent later overwrote, truncated or removed it
}

// oracle remembers every content version the script wrote. Each version the same agent
// did not later overwrite must survive: in a tree, a conflict copy or the server's
// history.
type oracle struct {
	recs  []*record
	known map[string]bool // every content ever written (and the empty file)
}

func newOracle() *oracle {
	return &oracle{known: map[string]bool{e2eproc.SHA256(nil): true}}
}

func (o *oracle) wrote(step int, agent, path string, data []byte) {
	o.overwritten(agent, path)
	sha := e2eproc.SHA256(data)
	o.known[sha] = true
	o.recs = append(o.recs, &record{step: step, agent: agent, path: path, sha: sha, size: int64(len(data))})
}

// overwritten marks what agent wrote at path or below it as replaced by agent itself.
func (o *oracle) overwritten(agent, path string) {
	for _, r := range o.recs {
		if r.agent == agent && (r.path == path || strings.HasPrefix(r.path, path+"/")) {
			r.superseded = true
		}
	}
}

// moved follows a rename by agent: its versions at from that the disk held (sha) are
// now at to.
func (o *oracle) moved(agent, from, to, sha string) {
	for _, r := range o.recs {
		if r.agent == agent && r.path == from && r.sha == sha && !r.superseded {
			r.path = to
		}
	}
}

// checkKnown fails for every file of the folders and the server whose content no step
// wrote: a partial download or upload under a final name.
func (o *oracle) checkKnown(t *testing.T, c *cluster, entries map[string]proto.Entry) {
	t.Helper()
	for _, a := range c.agents {
		m, err := e2eproc.LocalManifest(a.dir, skip)
		if err != nil {
			t.Fatal(err)
		}
		patching := patchesPending(a.dir)
		for p, line := range m {
			if patching[p] {
				t.Logf("agent %s: %q is being patched in place (a journal names it): its content is checked once the agent started again", a.id, p)
				continue
			}
			if sha, ok := shaOf(line); ok && !o.known[sha] {
				t.Errorf("agent %s: %q holds content %s that no step wrote (a partial file under its final name)", a.id, p, sha)
			}
		}
	}
	for p, e := range entries {
		if !e.Deleted && e.Type == proto.TypeFile && !o.known[e.SHA256] {
			t.Errorf("server: %q holds content %s that no step wrote", p, e.SHA256)
		}
	}
}

// patchesPending returns the paths that the patch journals in the state dir of the
// agent on dir name: an agent killed while it patched a file in place leaves part of
// each version in it until it starts again and finishes the patch from the journal.
// The journal's layout: "sfpatch1", the header's length (4 bytes, big-endian), the
// header (JSON), the bytes, their SHA-256.
func patchesPending(dir string) map[string]bool {
	names, _ := filepath.Glob(filepath.Join(dir, ignore.StateDirName, "patch-*.journal"))
	out := map[string]bool{}
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil || len(b) < 12 {
			continue
		}
		n := int(binary.BigEndian.Uint32(b[8:12]))
		var h struct {
			Path string `json:"path"`
		}
		if 12+n <= len(b) && json.Unmarshal(b[12:12+n], &h) == nil {
			out[h.Path] = true
		}
	}
	return out
}

func shaOf(line string) (string, bool) {
	f := strings.Fields(line)
	if len(f) == 3 && f[0] == "file" {
		return f[1], true
	}
	return "", false
}

// checkNothingLost fails for every version no agent overwrote that is neither in a
// tree nor in the server's history; it returns the bytes of the versions it found.
func (o *oracle) checkNothingLost(t *testing.T, c *cluster, entries map[string]proto.Entry) int64 {
	t.Helper()
	present := map[string]bool{}
	for _, a := range c.agents {
		m, err := e2eproc.LocalManifest(a.dir, skip)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range m {
			if sha, ok := shaOf(line); ok {
				present[sha] = true
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	paths := make([]string, 0, len(entries))
	for p := range entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		vs, err := c.client.Versions(ctx, p)
		if err != nil {
			t.Fatalf("versions of %q: %v", p, err)
		}
		for _, v := range vs.Versions {
			if v.Type == proto.TypeFile && !v.Deleted {
				present[v.SHA256] = true
			}
		}
	}
	var verified int64
	for _, r := range o.recs {
		if r.superseded {
			continue
		}
		if !present[r.sha] {
			t.Errorf("LOST: step %d wrote %d bytes (%s) to %q on %s; no tree, conflict copy or server version holds them",
				r.step, r.size, r.sha[:12], r.path, r.agent)
			continue
		}
		verified += r.size
	}
	return verified
}

// checkBlocks reads every loose block file the server stored (DIR/<hh>/<hash>) and
// checks it against its name; it returns the bytes read. Blocks in pack files are
// checked by checkReferencedBlocks, through the store, once the server is down.
func checkBlocks(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	fanout, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read blocks dir: %v", err)
	}
	for _, d := range fanout {
		if !d.IsDir() || len(d.Name()) != 2 || !blobs.ValidHash(d.Name()+strings.Repeat("0", 62)) {
			continue // tmp/ (uploads in progress, cleared on open), packs/
		}
		files, err := os.ReadDir(filepath.Join(dir, d.Name()))
		if err != nil {
			t.Fatalf("read blocks dir: %v", err)
		}
		for _, f := range files {
			p := filepath.Join(dir, d.Name(), f.Name())
			got, n, err := fileSHA(p)
			if errors.Is(err, fs.ErrNotExist) {
				continue // collected meanwhile
			}
			if err != nil {
				t.Fatalf("read block: %v", err)
			}
			total += n
			if got != f.Name() {
				t.Errorf("block %s holds content hashing to %s", p, got)
			}
		}
	}
	return total
}

func fileSHA(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// checkReferencedBlocks opens the block store of a stopped server and reads every block
// the metadata store refers to, checking it against its hash; it returns the bytes read.
func checkReferencedBlocks(t *testing.T, dir string, st store.Store) int64 {
	t.Helper()
	bs, err := blobs.Open(dir)
	if err != nil {
		t.Fatalf("block store does not open after a crash: %v", err)
	}
	defer bs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var total int64
	err = st.BlockRefs(ctx, func(hash string) error {
		rc, _, err := bs.Open(hash)
		if err != nil {
			t.Errorf("referenced block %s: %v", hash, err)
			return nil
		}
		defer rc.Close()
		h := sha256.New()
		n, err := io.Copy(h, rc)
		if err != nil {
			t.Errorf("read block %s: %v", hash, err)
			return nil
		}
		total += n
		if got := hex.EncodeToString(h.Sum(nil)); got != hash {
			t.Errorf("block %s holds content hashing to %s", hash, got)
		}
		return nil
	})
	if err != nil {
		t.Errorf("server store's block references do not read after a crash: %v", err)
	}
	return total
}

// checkStoresOpen opens every agent's state database and the server's store after a
// crash (everything was killed with SIGKILL) and reads them whole, blocks included; it
// returns the block bytes read.
func checkStoresOpen(t *testing.T, c *cluster) int64 {
	t.Helper()
	for _, a := range c.agents {
		db, err := state.Open(filepath.Join(a.dir, ".syncfolder"))
		if err != nil {
			t.Fatalf("agent %s: state store does not open after a crash: %v", a.id, err)
		}
		if _, err := db.Trees(); err != nil {
			t.Errorf("agent %s: state store does not read after a crash: %v", a.id, err)
		}
		if _, _, err := db.Cursor(); err != nil {
			t.Errorf("agent %s: cursor does not read after a crash: %v", a.id, err)
		}
		if err := db.Close(); err != nil {
			t.Errorf("agent %s: close state store: %v", a.id, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var st store.Store
	var err error
	if c.pg != nil {
		st, err = postgres.Open(ctx, c.pgURL)
	} else {
		st, err = sqlite.Open(filepath.Join(c.dataDir(), "meta.db"))
	}
	if err != nil {
		t.Fatalf("server store does not open after a crash: %v", err)
	}
	defer st.Close()
	if _, err := st.Stats(ctx); err != nil {
		t.Errorf("server store does not read after a crash: %v", err)
	}
	return checkReferencedBlocks(t, filepath.Join(c.dataDir(), "blocks"), st)
}

// figures are what a run did, for docs/reliability.md.
type figures struct {
	mu            sync.Mutex
	seeds         int
	ops           map[string]int
	faults        map[string]int
	bytesWritten  int64
	bytesVerified int64
	conflicts     int
}

func newFigures() *figures { return &figures{ops: map[string]int{}, faults: map[string]int{}} }

func (f *figures) op(kind string)    { f.mu.Lock(); f.ops[kind]++; f.mu.Unlock() }
func (f *figures) fault(kind string) { f.mu.Lock(); f.faults[kind]++; f.mu.Unlock() }

func (f *figures) add(g *figures) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	f.seeds += g.seeds
	for k, v := range g.ops {
		f.ops[k] += v
	}
	for k, v := range g.faults {
		f.faults[k] += v
	}
	f.bytesWritten += g.bytesWritten
	f.bytesVerified += g.bytesVerified
	f.conflicts += g.conflicts
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func (f *figures) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	kv := func(m map[string]int) string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
		}
		return strings.Join(parts, " ")
	}
	return fmt.Sprintf("seeds=%d ops=%d [%s] faults=%d [%s] conflictCopies=%d bytesWritten=%d bytesVerified=%d",
		f.seeds, sum(f.ops), kv(f.ops), sum(f.faults), kv(f.faults), f.conflicts, f.bytesWritten, f.bytesVerified)
}

// totals add up every seed of the run; TestMain prints them.
var totals = newFigures()

func (f *figures) print() {
	if f.seeds > 0 {
		fmt.Printf("chaos totals: %s\n", f)
	}
}
