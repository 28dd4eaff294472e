// Command images builds the project's container image without a Docker engine: one OCI image
// holding /manager, /syncserver and /syncagent (static Go binaries), so the operator, the
// servers it deploys and the agents it injects never skew. The base is empty: a CA bundle
// copied from the build host, /etc/passwd and /etc/group naming the nonroot user 65532, and
// /tmp. It has no shell and no entrypoint: every container names its command.
//
//	images build -image REF -version V -ldflags FLAGS -out DIR   → DIR/<name>-<tag>.tar
//	images push  -image REF [-dir DIR | -tarball FILE]            → pushes the tarball's image
//
// The tarball is what tarball.Write produces (`ctr -n k8s.io image import FILE` loads it).
// push uses go-containerregistry's remote with REGISTRY_USERNAME and REGISTRY_PASSWORD when
// set, else the docker config keychain (docker login).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: images build|push [flags]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	fs := flag.NewFlagSet("images "+args[0], flag.ContinueOnError)
	image := fs.String("image", "ghcr.io/syncedfolder/synced-folder:dev", "image reference (repository:tag)")
	switch args[0] {
	case "build":
		version := fs.String("version", "dev", "version stamped into the binaries and the image labels")
		ldflags := fs.String("ldflags", "", "linker flags (default: -s -w and the version)")
		out := fs.String("out", "bin/images", "directory of the image tarball")
		arch := fs.String("arch", runtime.GOARCH, "GOARCH of the image")
		caFile := fs.String("ca-file", "/etc/ssl/certs/ca-certificates.crt", "CA bundle copied into the image")
		revision := fs.String("revision", "", "source revision for the org.opencontainers.image.revision label")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *ldflags == "" {
			*ldflags = "-s -w -X " + versionVar + "=" + *version
		}
		binDir, err := os.MkdirTemp("", "images-bin-")
		if err != nil {
			return fmt.Errorf("create build dir: %w", err)
		}
		defer os.RemoveAll(binDir)
		if err := buildBinaries(ctx, ".", binDir, *arch, *ldflags); err != nil {
			return err
		}
		img, err := buildImage(Spec{BinDir: binDir, CAFile: *caFile, Version: *version, Revision: *revision, Arch: *arch})
		if err != nil {
			return err
		}
		path := filepath.Join(*out, tarballName(*image))
		if err := writeTarball(img, *image, path); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s %s\n", path, *image)
		return nil
	case "push":
		tarball := fs.String("tarball", "", "image tarball written by `images build` (default: the one for -image in -dir)")
		dir := fs.String("dir", "bin/images", "directory of the image tarballs")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *tarball == "" {
			*tarball = filepath.Join(*dir, tarballName(*image))
		}
		d, err := pushTarball(ctx, *tarball, *image, credentialsFromEnv())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s@%s\n", *image, d)
		return nil
	}
	return fmt.Errorf("unknown command %q: want build or push", args[0])
}

// tarballName is the file name of an image's tarball: the repository's last element and the
// tag, e.g. synced-folder-v1.2.3.tar.
func tarballName(ref string) string {
	repo, tag := ref, "latest"
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		repo, tag = ref[:i], ref[i+1:]
	}
	return repo[strings.LastIndex(repo, "/")+1:] + "-" + tag + ".tar"
}
