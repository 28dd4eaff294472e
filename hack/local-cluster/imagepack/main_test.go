package main

import (
	"archive/tar"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// staticBinary builds the pause command (a static Go program) for packing.
func staticBinary(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "pause")
	cmd := exec.Command("go", "build", "-o", out, "../pause")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build pause: %v\n%s", err, b)
	}
	return out
}

func TestPackWritesLoadableImage(t *testing.T) {
	bin := staticBinary(t)
	out := filepath.Join(t.TempDir(), "img.tar")
	if err := run([]string{"-ref", "localhost/test/pause:v1", "-out", out, bin + "=/bin/pause"}); err != nil {
		t.Fatalf("run: %v", err)
	}
	tag, err := name.NewTag("localhost/test/pause:v1")
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("read image back: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cf.Config.Entrypoint, " "); got != "/bin/pause" {
		t.Errorf("entrypoint = %q, want /bin/pause", got)
	}
	if cf.OS != "linux" {
		t.Errorf("os = %q, want linux", cf.OS)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	entries := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		entries[h.Name] = h
		if h.Name == "bin/pause" {
			got, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Error("bin/pause in the image differs from the packed binary")
			}
		}
	}
	if h := entries["bin/"]; h == nil || h.Typeflag != tar.TypeDir {
		t.Errorf("no bin/ directory entry before the binary: %v", entries)
	}
	if h := entries["bin/pause"]; h == nil || h.Mode != 0o755 {
		t.Errorf("bin/pause missing or not 0755: %v", h)
	}
}

func TestPackIsReproducible(t *testing.T) {
	bin := staticBinary(t)
	dir := t.TempDir()
	var digests []string
	for _, f := range []string{"a.tar", "b.tar"} {
		img, err := pack(map[string]string{"/pause": bin}, "/pause")
		if err != nil {
			t.Fatal(err)
		}
		if err := write(img, "localhost/test/pause:v1", filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.String())
	}
	if digests[0] != digests[1] {
		t.Errorf("digests differ: %v", digests)
	}
}

func TestRunRefusesBadInput(t *testing.T) {
	bin := staticBinary(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "img.tar")
	notELF := filepath.Join(dir, "empty")
	if err := os.WriteFile(notELF, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]string{
		"no files":        {"-ref", "localhost/a:b", "-out", out},
		"relative dest":   {"-ref", "localhost/a:b", "-out", out, bin + "=pause"},
		"root dest":       {"-ref", "localhost/a:b", "-out", out, bin + "=/"},
		"duplicate dest":  {"-ref", "localhost/a:b", "-out", out, bin + "=/p", bin + "=/p"},
		"dynamic binary":  {"-ref", "localhost/a:b", "-out", out, "/bin/sh=/sh"},
		"missing binary":  {"-ref", "localhost/a:b", "-out", out, filepath.Join(dir, "nope") + "=/p"},
		"bad reference":   {"-ref", "UPPER CASE", "-out", out, bin + "=/p"},
		"no reference":    {"-out", out, bin + "=/p"},
		"not an ELF file": {"-ref", "localhost/a:b", "-out", out, notELF + "=/p"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			if err := run(args); err == nil {
				t.Fatalf("run(%q) succeeded", args)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("%s written despite the error", out)
			}
		})
	}
}
