package main

import (
	"context"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// credentials log in to a registry; empty means the docker config keychain (docker login),
// then anonymous.
type credentials struct{ username, password string }

func credentialsFromEnv() credentials {
	return credentials{os.Getenv("REGISTRY_USERNAME"), os.Getenv("REGISTRY_PASSWORD")}
}

// pushTarball pushes the one image of a tarball written by writeTarball to ref and returns
// its manifest digest.
func pushTarball(ctx context.Context, path, ref string, cred credentials) (v1.Hash, error) {
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("read image tarball %q: %w", path, err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("parse image reference %q: %w", ref, err)
	}
	auth := remote.WithAuthFromKeychain(authn.DefaultKeychain)
	if cred.username != "" || cred.password != "" {
		auth = remote.WithAuth(&authn.Basic{Username: cred.username, Password: cred.password})
	}
	if err := remote.Write(tag, img, auth, remote.WithContext(ctx)); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", tag, err)
	}
	d, err := img.Digest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image digest: %w", err)
	}
	return d, nil
}
