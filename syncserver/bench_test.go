package syncserver

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// benchClient posts JSON to a test server over loopback HTTP, like an agent would.
func benchPost(b *testing.B, c *http.Client, url string, body []byte) []byte {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		b.Fatalf("%s: %d %s", url, resp.StatusCode, raw)
	}
	return raw
}

// BenchmarkCommitSmallFiles commits new 4 KiB files inlined in batches of 1000, end to
// end over loopback HTTP into the embedded store and the block store (both durable).
// Goal: ≥ 5,000 files/s.
func BenchmarkCommitSmallFiles(b *testing.B) {
	b.Run("store=sqlite", func(b *testing.B) { benchCommitSmallFiles(b, openSQLiteStore) })
	b.Run("store=postgres", func(b *testing.B) { benchCommitSmallFiles(b, openPostgresStore) })
}

func benchCommitSmallFiles(b *testing.B, open func(testing.TB) store.Store) {
	const batch, size = 1000, 4 << 10
	openStore = open
	defer func() { openStore = openSQLiteStore }()
	e := newEnv(b)
	client := e.http.Client()
	var n int64
	b.SetBytes(size)
	b.ResetTimer()
	for done := 0; done < b.N; {
		items := make([]proto.CommitItem, 0, batch)
		for len(items) < batch && done+len(items) < b.N {
			content := make([]byte, size)
			rand.Read(content[:64])
			binary.LittleEndian.PutUint64(content[64:], uint64(n))
			n++
			items = append(items, proto.CommitItem{Path: "bench/f" + itoa(n), Type: proto.TypeFile, Size: size,
				Mode: 0o644, MTimeNs: n, SHA256: sha(content), Data: content})
		}
		body, _ := json.Marshal(proto.CommitRequest{Items: items})
		raw := benchPost(b, client, e.http.URL+proto.RouteCommit, body)
		var resp proto.CommitResponse
		if err := json.Unmarshal(raw, &resp); err != nil {
			b.Fatal(err)
		}
		for _, r := range resp.Results {
			if r.Status != proto.StatusOK {
				b.Fatalf("commit: %+v", r)
			}
		}
		done += len(items)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "files/s")
}

// BenchmarkBlockUpload PUTs distinct 4 MiB blocks over loopback HTTP from 8 concurrent
// clients; each block is hashed, written and fsynced by the block store. Run with
// -benchtime=256x for the 1 GiB figure. Goal: ≥ 500 MiB/s.
func BenchmarkBlockUpload(b *testing.B) {
	const size = 4 << 20
	e := newEnv(b)
	client := e.http.Client()
	// Block i is the seed with i in its first 8 bytes: distinct blocks without holding
	// b.N of them in memory. Hashes are computed before the timer starts.
	seed := make([]byte, size)
	rand.Read(seed)
	hashes := make([]string, b.N)
	head := func(i int) []byte {
		var h [8]byte
		binary.LittleEndian.PutUint64(h[:], uint64(i))
		return h[:]
	}
	for i := range hashes {
		d := sha256.New()
		d.Write(head(i))
		d.Write(seed[8:])
		hashes[i] = hex.EncodeToString(d.Sum(nil))
	}
	var next atomic.Int64
	b.SetBytes(size)
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				req, _ := http.NewRequest("PUT", e.http.URL+proto.RouteBlocks+hashes[i], io.MultiReader(bytes.NewReader(head(i)), bytes.NewReader(seed[8:])))
				req.ContentLength = size
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil {
					b.Error(err)
					return
				}
				if resp.StatusCode != http.StatusCreated {
					b.Errorf("PUT block: %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func itoa(n int64) string {
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(buf[i:])
		}
	}
}
