package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	testVersion = "v0.0.0-test"
	hostCA      = "/etc/ssl/certs/ca-certificates.crt"
)

// The binaries are built once for the whole test binary: linking three commands is the
// slow part.
var built struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

func binaries(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "images-test-bin-")
		if built.err == nil {
			built.err = buildBinaries(context.Background(), filepath.Join("..", ".."), built.dir, runtime.GOARCH,
				"-s -w -X "+versionVar+"="+testVersion)
		}
	})
	if built.err != nil {
		t.Fatalf("build binaries: %v", built.err)
	}
	return built.dir
}

func spec(t *testing.T) Spec {
	return Spec{BinDir: binaries(t), CAFile: hostCA, Version: testVersion, Revision: "abc123", Arch: runtime.GOARCH}
}

var shared struct {
	once sync.Once
	img  v1.Image
	err  error
}

// testImage is the image built once from the test binaries.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	s := spec(t)
	shared.once.Do(func() { shared.img, shared.err = buildImage(s) })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.img
}

// imageTarball writes the test image into a tarball in a temp dir and returns its path.
func imageTarball(t *testing.T, ref string) string {
	t.Helper()
	img := testImage(t)
	path := filepath.Join(t.TempDir(), tarballName(ref))
	if err := writeTarball(img, ref, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// imageFile is one file of an image's flattened filesystem.
type imageFile struct {
	hdr  *tar.Header
	data []byte
}

// files reads the image's flattened filesystem in one pass (each pass decompresses every
// layer, the slow part of these tests).
func files(t *testing.T, img v1.Image) map[string]imageFile {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]imageFile{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimPrefix(h.Name, "/")] = imageFile{h, b}
	}
}

func TestImageTarball(t *testing.T) {
	ref := "ghcr.io/syncedfolder/synced-folder:" + testVersion
	path := imageTarball(t, ref)
	if filepath.Base(path) != "synced-folder-"+testVersion+".tar" {
		t.Errorf("tarball name %q", filepath.Base(path))
	}
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatalf("read back %s: %v", path, err)
	}
	// The docker-save tarball format keeps config and layers but not the manifest, so the
	// media type is checked on the image as built.
	built := testImage(t)
	if mt, _ := built.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s, want OCI", mt)
	}
	builtCfg, _ := built.ConfigName()
	readCfg, _ := img.ConfigName()
	if builtCfg != readCfg {
		t.Errorf("the tarball's image config %s differs from the built one %s", readCfg, builtCfg)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", cf.Config.User)
	}
	if len(cf.Config.Entrypoint) != 0 || len(cf.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q: the image has none, containers name their command", cf.Config.Entrypoint, cf.Config.Cmd)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	for k, want := range map[string]string{"org.opencontainers.image.version": testVersion,
		"org.opencontainers.image.revision": "abc123", "org.opencontainers.image.title": "synced-folder"} {
		if cf.Config.Labels[k] != want {
			t.Errorf("label %s=%q, want %q", k, cf.Config.Labels[k], want)
		}
	}

	fs := files(t, img)
	for _, c := range Commands {
		f, ok := fs[c]
		if !ok {
			t.Errorf("/%s missing", c)
			continue
		}
		if f.hdr.Typeflag != tar.TypeReg || f.hdr.Mode&0o111 != 0o111 {
			t.Errorf("/%s: type %c mode %o, want an executable file", c, f.hdr.Typeflag, f.hdr.Mode)
		}
		if err := checkStatic(bytes.NewReader(f.data), runtime.GOARCH); err != nil {
			t.Errorf("/%s: %v", c, err)
		}
	}
	if f, ok := fs["tmp"]; !ok || f.hdr.Mode&0o1777 != 0o1777 {
		t.Errorf("/tmp missing or not world-writable with the sticky bit: %+v", f.hdr)
	}
	ca, err := os.ReadFile(hostCA)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fs["etc/ssl/certs/ca-certificates.crt"].data, ca) {
		t.Error("the image's CA bundle differs from the host's")
	}
	if p := string(fs["etc/passwd"].data); !strings.Contains(p, "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd lacks nonroot 65532: %q", p)
	}
	if g := string(fs["etc/group"].data); !strings.Contains(g, "nonroot:x:65532:") {
		t.Errorf("/etc/group lacks nonroot 65532: %q", g)
	}
	for name := range fs {
		if strings.HasPrefix(name, "bin/") || name == "bin" || strings.HasSuffix(name, "/sh") {
			t.Errorf("the image holds %s; it has no shell and no /bin", name)
		}
	}

	// The packed binary really runs and carries the version.
	agent := filepath.Join(t.TempDir(), "syncagent")
	if err := os.WriteFile(agent, fs["syncagent"].data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(agent, "-h").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "-server") {
		t.Errorf("packed syncagent -h: %v\n%s", err, out)
	}
	if !bytes.Contains(fs["manager"].data, []byte(testVersion)) {
		t.Error("the packed manager does not carry the version from the linker flags")
	}

	// The tarball names the tag, so `ctr image import` knows what to call it.
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil || len(m) != 1 || len(m[0].RepoTags) != 1 || m[0].RepoTags[0] != ref {
		t.Errorf("tarball manifest %+v (%v), want one image tagged %s", m, err, ref)
	}
}

func TestImageIsReproducible(t *testing.T) {
	a := testImage(t)
	b, err := buildImage(spec(t))
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("same binaries, different digests: %s %s", da, db)
	}
}

func TestBuildImageRefusesBadInput(t *testing.T) {
	s := spec(t)
	s.CAFile = filepath.Join(t.TempDir(), "none.crt")
	if _, err := buildImage(s); err == nil {
		t.Error("built an image without a CA bundle")
	}
	// A dynamically linked binary (the host's ls) cannot run on an empty base.
	dir := t.TempDir()
	for _, c := range Commands {
		src := filepath.Join(binaries(t), c)
		if c == "syncagent" {
			src = "/bin/ls"
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, c), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s = spec(t)
	s.BinDir = dir
	if _, err := buildImage(s); err == nil || !strings.Contains(err.Error(), "PT_INTERP") {
		t.Errorf("packed a dynamic binary: %v", err)
	}
	if err := checkStatic(strings.NewReader("#!/bin/sh\n"), runtime.GOARCH); err == nil {
		t.Error("a shell script passed as an ELF binary")
	}
}

// manifestDigest fetches ref's manifest from the registry and returns the sha256 of its bytes.
func manifestDigest(t *testing.T, base, repo, tag string, auth func(*http.Request)) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/v2/"+repo+"/manifests/"+tag, nil)
	req.Header.Set("Accept", string(types.OCIManifestSchema1))
	if auth != nil {
		auth(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("pull manifest: %s %s", resp.Status, b)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestPushToRegistry(t *testing.T) {
	const user, pass = "ci", "s3cret"
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	// Basic auth in front of the in-process registry, as a private registry would ask.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "login", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := host + "/syncedfolder/synced-folder:" + testVersion
	path := imageTarball(t, ref)
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}

	if _, err := pushTarball(context.Background(), path, ref, credentials{user, "wrong"}); err == nil {
		t.Fatal("pushed with a wrong password")
	}
	// Twice: the second push finds every blob there and only puts the manifest.
	for i := range 2 {
		got, err := pushTarball(context.Background(), path, ref, credentials{user, pass})
		if err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
		if got != want {
			t.Errorf("push %d returned digest %s, want %s", i, got, want)
		}
	}
	pulled := manifestDigest(t, srv.URL, "syncedfolder/synced-folder", testVersion, func(r *http.Request) { r.SetBasicAuth(user, pass) })
	if pulled != want.String() {
		t.Errorf("pulled manifest digest %s, pushed %s", pulled, want)
	}
	// Every blob the manifest names is in the registry.
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		req, _ := http.NewRequest(http.MethodHead, fmt.Sprintf("%s/v2/syncedfolder/synced-folder/blobs/%s", srv.URL, d.Digest), nil)
		req.SetBasicAuth(user, pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("blob %s: %s", d.Digest, resp.Status)
		}
	}
}

func TestRunRefusesBadUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"bake"}, {"push", "-dir", t.TempDir()}, {"push", "-image", "bad ref!"}, {"build", "-nope"}} {
		if err := run(args, io.Discard); err == nil {
			t.Errorf("images %q succeeded", args)
		}
	}
}
