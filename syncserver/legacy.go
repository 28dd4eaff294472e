package syncserver

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	fastcdc "github.com/jotfs/fastcdc-go"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// The original system's API (/index, /download, /upload, /delete, /logs), served on the
// same store as /v1 so that curl scripts written for it keep working.

func (s *Server) handleMetrics() http.HandlerFunc {
	h := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{s}})
	return h.ServeHTTP
}

type slogPrinter struct{ s *Server }

func (p slogPrinter) Println(v ...any) { p.s.log.Error("metrics", "err", fmt.Sprint(v...)) }

// LegacyIndexEntry is one value of GET /index.
type LegacyIndexEntry struct {
	SHA     string  `json:"sha"`
	MTime   float64 `json:"mtime"`
	Version int64   `json:"version"`
}

func (s *Server) handleLegacyIndex(w http.ResponseWriter, r *http.Request) {
	idx := map[string]LegacyIndexEntry{}
	err := s.store.Live(r.Context(), func(e proto.Entry) error {
		if e.Type == proto.TypeFile {
			idx[e.Path] = LegacyIndexEntry{SHA: e.SHA256, MTime: float64(e.MTimeNs) / 1e9, Version: e.Seq}
		}
		return nil
	})
	if err != nil {
		s.storeFailed(w, r, "list files", err)
		return
	}
	writeJSON(w, http.StatusOK, idx)
}

func (s *Server) handleLegacyDownload(w http.ResponseWriter, r *http.Request) {
	p, err := proto.CleanPath(r.URL.Query().Get("path"))
	if err != nil {
		badRequest(w, err)
		return
	}
	e, err := s.store.Get(r.Context(), p)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (e.Deleted || e.Type != proto.TypeFile)) {
		writeError(w, http.StatusNotFound, "file not found: "+p)
		return
	}
	if err != nil {
		s.storeFailed(w, r, "read entry", err)
		return
	}
	s.sendFile(w, r, e)
}

// LegacyUploadResponse answers POST /upload: 200 with the new version, or 409 with
// ConflictPath when base_sha was stale and the upload was kept as a conflict copy.
type LegacyUploadResponse struct {
	Path         string `json:"path"`
	SHA          string `json:"sha"`
	Version      int64  `json:"version"`
	Error        string `json:"error,omitempty"`
	ConflictPath string `json:"conflict_path,omitempty"`
}

// uploadedFile is the content of an /upload, already stored as blocks.
type uploadedFile struct {
	sha    string
	size   int64
	blocks []proto.Block
}

func (s *Server) handleLegacyUpload(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > s.cfg.MaxFileSize+1<<20 {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("upload over the limit of %d bytes", s.cfg.MaxFileSize))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxFileSize+1<<20)
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, http.StatusBadRequest, "want a multipart/form-data body with fields path, base_sha (optional) and file: "+err.Error())
		return
	}
	var (
		pathVal, baseSHA string
		havePath         bool
		file             *uploadedFile
	)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			badRequest(w, fmt.Errorf("read multipart body: %w", err))
			return
		}
		switch part.FormName() {
		case "path":
			// Checked at once, so that a bad path refuses the upload before any block of
			// it is stored.
			pathVal, err = readField(part, proto.MaxPathBytes)
			if err == nil {
				_, err = proto.CleanPath(pathVal)
				if err != nil {
					err = &itemError{msg: err.Error()}
				}
			}
			havePath = true
		case "base_sha":
			baseSHA, err = readField(part, 128)
			baseSHA = strings.ToLower(strings.TrimSpace(baseSHA))
		case "file":
			if file != nil {
				err = errors.New("more than one file field")
				break
			}
			file, err = s.storeUpload(part)
		default:
			_, err = io.Copy(io.Discard, io.LimitReader(part, 1<<20))
		}
		part.Close()
		if err != nil {
			var ie *itemError
			switch {
			case isTooLarge(err) || errors.Is(err, errBodyTooLarge):
				writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("upload over the limit of %d bytes", s.cfg.MaxFileSize))
			case errors.As(err, &ie):
				writeError(w, http.StatusBadRequest, ie.msg)
			default:
				s.storeFailed(w, r, "store upload", err)
			}
			return
		}
	}
	if !havePath {
		writeError(w, http.StatusBadRequest, "missing form field path")
		return
	}
	p, err := proto.CleanPath(pathVal)
	if err != nil {
		badRequest(w, err)
		return
	}
	if file == nil {
		writeError(w, http.StatusBadRequest, "missing form field file")
		return
	}
	if baseSHA != "" && len(baseSHA) != 64 {
		writeError(w, http.StatusBadRequest, "base_sha is not a hex SHA-256")
		return
	}
	s.commitUpload(w, r, p, baseSHA, file)
}

func readField(part *multipart.Part, max int) (string, error) {
	b, err := io.ReadAll(io.LimitReader(part, int64(max)+1))
	if err != nil {
		return "", err
	}
	if len(b) > max {
		return "", itemErrorf("form field %s longer than %d bytes", part.FormName(), max)
	}
	return string(b), nil
}

// legacyChunking cuts uploads into content-defined blocks like the agent does, so that
// the same content uploaded either way shares blocks.
var legacyChunking = fastcdc.Options{MinSize: 256 << 10, AverageSize: 1 << 20, MaxSize: 4 << 20}

// storeUpload streams an uploaded file into the block store.
func (s *Server) storeUpload(r io.Reader) (*uploadedFile, error) {
	whole := sha256.New()
	limited := &io.LimitedReader{R: io.TeeReader(r, whole), N: s.cfg.MaxFileSize + 1}
	ch, err := fastcdc.NewChunker(limited, legacyChunking)
	if err != nil {
		return nil, fmt.Errorf("chunker: %w", err)
	}
	f := &uploadedFile{}
	bh := sha256.New()
	for {
		c, err := ch.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		f.size += int64(len(c.Data))
		if f.size > s.cfg.MaxFileSize {
			return nil, errBodyTooLarge
		}
		bh.Reset()
		bh.Write(c.Data)
		h := hex.EncodeToString(bh.Sum(nil))
		_, created, err := s.blocks.Put(h, bytes.NewReader(c.Data), s.cfg.MaxBlockSize)
		if err != nil {
			return nil, fmt.Errorf("store block %s: %w", h, err)
		}
		if created {
			s.metrics.blocksStored.Inc()
		} else {
			s.metrics.dedupHits.Inc()
		}
		f.blocks = append(f.blocks, proto.Block{Hash: h, Size: int64(len(c.Data))})
	}
	f.sha = hex.EncodeToString(whole.Sum(nil))
	return f, nil
}

// maxLegacyRetries bounds how often an /upload or /delete without a base retries when a
// concurrent change moves the entry between its read and its commit.
const maxLegacyRetries = 8

func (s *Server) commitUpload(w http.ResponseWriter, r *http.Request, p, baseSHA string, f *uploadedFile) {
	ctx := r.Context()
	agent := agentFrom(ctx)
	newEntry := proto.Entry{Path: p, Type: proto.TypeFile, Size: f.size, Mode: 0o644,
		MTimeNs: time.Now().UnixNano(), SHA256: f.sha, Blocks: f.blocks}
	for range maxLegacyRetries {
		cur, err := s.store.Get(ctx, p)
		found := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.storeFailed(w, r, "read entry", err)
			return
		}
		live := found && !cur.Deleted
		if live && cur.Type != proto.TypeFile {
			writeError(w, http.StatusConflict, fmt.Sprintf("%s is a %s on the server", p, cur.Type))
			return
		}
		if baseSHA != "" && live && cur.SHA256 != baseSHA {
			s.uploadConflict(w, r, p, f)
			return
		}
		if live && cur.SHA256 == f.sha {
			writeJSON(w, http.StatusOK, LegacyUploadResponse{Path: p, SHA: f.sha, Version: cur.Seq})
			return
		}
		var base int64
		if live {
			base = cur.Seq
		}
		res, err := s.commitOne(r, agent, newEntry, base, proto.ActionUpload)
		if err != nil {
			s.storeFailed(w, r, "commit upload", err)
			return
		}
		if res.Status == proto.StatusOK {
			writeJSON(w, http.StatusOK, LegacyUploadResponse{Path: p, SHA: f.sha, Version: res.Entry.Seq})
			return
		}
		if res.Status == proto.StatusError {
			writeError(w, http.StatusBadRequest, res.Error)
			return
		}
		// Conflict: someone changed the path meanwhile; look again.
	}
	writeError(w, http.StatusServiceUnavailable, "the path keeps changing; retry")
}

// uploadConflict keeps an upload whose base is stale as a conflict copy beside the file.
func (s *Server) uploadConflict(w http.ResponseWriter, r *http.Request, p string, f *uploadedFile) {
	agent := agentFrom(r.Context())
	at := time.Now()
	for range maxLegacyRetries {
		cp := proto.ConflictPath(p, agent, at)
		e := proto.Entry{Path: cp, Type: proto.TypeFile, Size: f.size, Mode: 0o644, MTimeNs: at.UnixNano(),
			SHA256: f.sha, Blocks: f.blocks}
		res, err := s.commitOne(r, agent, e, 0, proto.ActionConflict)
		if err != nil {
			s.storeFailed(w, r, "commit conflict copy", err)
			return
		}
		switch res.Status {
		case proto.StatusOK:
			s.metrics.conflicts.Inc()
			writeJSON(w, http.StatusConflict, LegacyUploadResponse{Path: p, SHA: f.sha, Version: res.Entry.Seq,
				Error:        "base_sha is not the current sha of " + p + "; the upload was kept as a conflict copy",
				ConflictPath: cp})
			return
		case proto.StatusError:
			writeError(w, http.StatusBadRequest, res.Error)
			return
		}
		// The name is taken (same agent, same second): try the next second.
		at = at.Add(time.Second)
	}
	writeError(w, http.StatusServiceUnavailable, "no free conflict copy name; retry")
}

// commitOne commits one entry whose blocks the server wrote itself.
func (s *Server) commitOne(r *http.Request, agent string, e proto.Entry, base int64, action string) (proto.ItemResult, error) {
	results := []proto.ItemResult{{Path: e.Path}}
	items := []pending{{idx: 0, trusted: true, change: store.Change{Entry: e, BaseSeq: base, Action: action}}}
	if err := s.commit(r.Context(), agent, items, results); err != nil {
		return proto.ItemResult{}, err
	}
	return results[0], nil
}

func (s *Server) handleLegacyDelete(w http.ResponseWriter, r *http.Request) {
	body, done, ok := jsonBody(w, r, s.cfg.MaxJSONBody)
	if !ok {
		return
	}
	p, err := decodeLegacyDelete(body)
	done()
	if err != nil {
		badRequest(w, err)
		return
	}
	ctx := r.Context()
	for range maxLegacyRetries {
		cur, err := s.store.Get(ctx, p)
		if errors.Is(err, store.ErrNotFound) || (err == nil && cur.Deleted) {
			writeError(w, http.StatusNotFound, "file not found: "+p)
			return
		}
		if err != nil {
			s.storeFailed(w, r, "read entry", err)
			return
		}
		e := proto.Entry{Path: p, Type: cur.Type, Mode: cur.Mode, MTimeNs: time.Now().UnixNano(), Deleted: true}
		res, err := s.commitOne(r, agentFrom(ctx), e, cur.Seq, proto.ActionDelete)
		if err != nil {
			s.storeFailed(w, r, "delete", err)
			return
		}
		if res.Status == proto.StatusOK {
			writeJSON(w, http.StatusOK, map[string]any{"path": p, "version": res.Entry.Seq, "deleted": true})
			return
		}
	}
	writeError(w, http.StatusServiceUnavailable, "the path keeps changing; retry")
}

// LegacyLogRecord is one row of GET /logs, the original files_log.
type LegacyLogRecord struct {
	Action    string    `json:"action"`
	Path      string    `json:"path"`
	Version   int64     `json:"version"`
	SHA       string    `json:"sha"`
	Timestamp time.Time `json:"timestamp"`
	Agent     string    `json:"agent"`
}

func (s *Server) handleLegacyLogs(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 10000 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q is not an integer from 1 to 10000", truncateForError(v)))
			return
		}
		limit = n
	}
	recs, err := s.store.Audit(r.Context(), store.AuditQuery{Limit: limit})
	if err != nil {
		s.storeFailed(w, r, "read audit log", err)
		return
	}
	out := make([]LegacyLogRecord, 0, len(recs))
	for _, a := range recs {
		out = append(out, LegacyLogRecord{Action: a.Action, Path: a.Path, Version: a.Seq, SHA: a.SHA256,
			Timestamp: a.Timestamp, Agent: a.Agent})
	}
	writeJSON(w, http.StatusOK, out)
}
