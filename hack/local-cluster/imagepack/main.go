// Command imagepack packs static binaries into a one-layer OCI image tarball that
// `ctr -n k8s.io image import` loads. The local cluster has no registry, so its helper images
// (the pause sandbox, CoreDNS) are made from binaries built on this machine.
//
//	imagepack -ref REF -out FILE [-entrypoint /cmd] SRC=DEST...
//
// Each SRC (a file on this machine) lands at DEST in the image with mode 0755. The image runs
// as root (CoreDNS binds port 53) with PATH=/ and no shell.
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is every timestamp in the image, so the same binaries give the same digest.
var epoch = time.Unix(0, 0).UTC()

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "imagepack:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("imagepack", flag.ContinueOnError)
	ref := fs.String("ref", "", "image reference (repository:tag)")
	out := fs.String("out", "", "tarball to write")
	entrypoint := fs.String("entrypoint", "", "entrypoint of the image (default: the first DEST)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *ref == "" || *out == "" || fs.NArg() == 0 {
		return errors.New("usage: imagepack -ref REF -out FILE [-entrypoint /cmd] SRC=DEST [SRC=DEST]")
	}
	files := map[string]string{}
	var first string
	for _, a := range fs.Args() {
		src, dest, ok := strings.Cut(a, "=")
		if !ok || src == "" || !path.IsAbs(dest) || path.Clean(dest) != dest || dest == "/" {
			return fmt.Errorf("parse file %q: want SRC=/absolute/dest", a)
		}
		if _, dup := files[dest]; dup {
			return fmt.Errorf("parse file %q: %s given twice", a, dest)
		}
		files[dest] = src
		if first == "" {
			first = dest
		}
	}
	if *entrypoint == "" {
		*entrypoint = first
	}
	img, err := pack(files, *entrypoint)
	if err != nil {
		return err
	}
	return write(img, *ref, *out)
}

// pack builds the image from files (image path → host path), refusing anything that is not a
// static ELF executable: a dynamically linked binary would fail only when the pod starts.
func pack(files map[string]string, entrypoint string) (v1.Image, error) {
	dests := make([]string, 0, len(files))
	for d := range files {
		dests = append(dests, d)
	}
	sort.Strings(dests)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, d := range dests {
		b, err := os.ReadFile(files[d])
		if err != nil {
			return nil, fmt.Errorf("read binary %q: %w", files[d], err)
		}
		if err := checkStatic(b); err != nil {
			return nil, fmt.Errorf("check binary %q: %w", files[d], err)
		}
		// Parent directories first, as a tar extractor expects.
		parts := strings.Split(strings.TrimPrefix(path.Dir(d), "/"), "/")
		for i := range parts {
			dir := strings.Join(parts[:i+1], "/")
			if dir == "" || dirs[dir] {
				continue
			}
			dirs[dir] = true
			h := &tar.Header{Name: dir + "/", Mode: 0o755, Typeflag: tar.TypeDir, ModTime: epoch, Format: tar.FormatPAX}
			if err := tw.WriteHeader(h); err != nil {
				return nil, fmt.Errorf("write tar header %q: %w", dir, err)
			}
		}
		h := &tar.Header{Name: strings.TrimPrefix(d, "/"), Mode: 0o755, Typeflag: tar.TypeReg, Size: int64(len(b)), ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("write tar header %q: %w", d, err)
		}
		if _, err := tw.Write(b); err != nil {
			return nil, fmt.Errorf("write tar entry %q: %w", d, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("make layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, layer)
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", runtime.GOARCH, v1.Time{Time: epoch}
	cf.Config.Entrypoint = []string{entrypoint}
	cf.Config.Env = []string{"PATH=/"}
	cf.Config.WorkingDir = "/"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// checkStatic accepts only an ELF executable with no program interpreter (statically linked).
func checkStatic(b []byte) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("read ELF: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (build with CGO_ENABLED=0)")
		}
	}
	return nil
}

// write stores img tagged ref at out (a `docker save`-style tarball), atomically.
func write(img v1.Image, ref, out string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("parse image reference %q: %w", ref, err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("create %q: %w", filepath.Dir(out), err)
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("create tarball %q: %w", tmp, err)
	}
	if err := tarball.Write(tag, img, f); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write tarball %q: %w", out, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("close tarball %q: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("rename tarball %q: %w", out, err)
	}
	return nil
}
