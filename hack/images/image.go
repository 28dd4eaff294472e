package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// versionVar is the linker symbol holding the build's version (see the Makefile).
const versionVar = "github.com/syncedfolder/synced-folder/internal/version.Version"

// Commands are the binaries the image holds, at its root.
var Commands = []string{"manager", "syncserver", "syncagent"}

// NonRoot is the uid and gid the image runs as (distroless' "nonroot").
const NonRoot = 65532

// epoch stamps every file and the config, so the same binaries give the same digest.
var epoch = time.Unix(0, 0).UTC()

// Spec describes one image build.
type Spec struct {
	// BinDir holds the static linux binaries named in Commands.
	BinDir string
	// CAFile is the PEM CA bundle copied to /etc/ssl/certs/ca-certificates.crt.
	CAFile string
	// Version and Revision go into the OCI labels.
	Version, Revision string
	// Arch is the image's GOARCH.
	Arch string
}

// buildBinaries builds the three commands of the module at moduleDir into outDir: static
// (CGO_ENABLED=0), reproducible paths (-trimpath), for linux/arch.
func buildBinaries(ctx context.Context, moduleDir, outDir, arch, ldflags string) error {
	args := []string{"build", "-trimpath", "-ldflags", ldflags, "-o", outDir + string(filepath.Separator)}
	for _, c := range Commands {
		args = append(args, "./cmd/"+c)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=-buildvcs=false")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %v: %w", Commands, err)
	}
	return nil
}

// checkStatic fails unless r is an ELF executable of the machine arch wants with no
// program interpreter (a dynamically linked binary cannot run on an empty base).
func checkStatic(r io.ReaderAt, arch string) error {
	f, err := elf.NewFile(r)
	if err != nil {
		return fmt.Errorf("not an ELF binary: %w", err)
	}
	defer f.Close()
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "arm": elf.EM_ARM,
		"386": elf.EM_386, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "riscv64": elf.EM_RISCV}
	if m, ok := want[arch]; ok && f.Machine != m {
		return fmt.Errorf("ELF machine %s, want %s for %s", f.Machine, m, arch)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("ELF type %s is not an executable", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("dynamically linked (has PT_INTERP); build with CGO_ENABLED=0")
		}
	}
	return nil
}

// tarEntry is one file of a layer.
type tarEntry struct {
	name string
	mode int64
	dir  bool
	data []byte
}

func layer(entries []tarEntry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: epoch, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(e.data))}
		if e.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("write tar header %q: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("write tar entry %q: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// buildImage assembles the image: a base layer (CA bundle, users, /tmp) and a layer with the
// binaries, each checked to be a static ELF executable first.
func buildImage(s Spec) (v1.Image, error) {
	ca, err := os.ReadFile(s.CAFile)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("CA bundle %q holds no PEM certificate", s.CAFile)
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonRoot, NonRoot)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", NonRoot)
	base, err := layer([]tarEntry{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, dir: true},
		{name: "tmp/", mode: 0o1777, dir: true},
	})
	if err != nil {
		return nil, err
	}
	var bins []tarEntry
	for _, c := range Commands {
		b, err := os.ReadFile(filepath.Join(s.BinDir, c))
		if err != nil {
			return nil, fmt.Errorf("read binary: %w", err)
		}
		if err := checkStatic(bytes.NewReader(b), s.Arch); err != nil {
			return nil, fmt.Errorf("binary %q: %w", c, err)
		}
		bins = append(bins, tarEntry{name: c, mode: 0o755, data: b})
	}
	binLayer, err := layer(bins)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, base, binLayer)
	if err != nil {
		return nil, fmt.Errorf("append layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", s.Arch, v1.Time{Time: epoch}
	cf.Config.User = fmt.Sprintf("%d:%d", NonRoot, NonRoot)
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       "synced-folder",
		"org.opencontainers.image.description": "synced-folder operator, sync server and sync agent: /manager, /syncserver, /syncagent",
		"org.opencontainers.image.version":     s.Version,
		"org.opencontainers.image.source":      "https://github.com/syncedfolder/synced-folder",
		"org.opencontainers.image.url":         "https://github.com/syncedfolder/synced-folder",
		"org.opencontainers.image.licenses":    "Apache-2.0",
	}
	if s.Revision != "" {
		cf.Config.Labels["org.opencontainers.image.revision"] = s.Revision
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// writeTarball writes img tagged ref to path (a `docker save`-style tarball with an OCI
// manifest, as tarball.Write makes it).
func writeTarball(img v1.Image, ref, path string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("parse image reference %q: %w", ref, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %q: %w", filepath.Dir(path), err)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("create tarball: %w", err)
	}
	if err := tarball.Write(tag, img, f); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write tarball %q: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("close tarball %q: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename tarball: %w", err)
	}
	return nil
}
