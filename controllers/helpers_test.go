package controllers

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// unstructuredFolder builds SyncedFolders from raw maps, so tests can send what typed Go
// cannot express (a malformed quantity, an unknown enum value).
type unstructuredFolder struct{ obj *unstructured.Unstructured }

func (u *unstructuredFolder) set(ns, name string, spec map[string]any) {
	u.obj = &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": syncv1.GroupVersion.String(),
		"kind":       "SyncedFolder",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec":       spec,
	}}
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// loadSamples decodes every object of config/samples/*.yaml except the kustomization.
func loadSamples(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "config", "samples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	var out []*unstructured.Unstructured
	for _, file := range files {
		if filepath.Base(file) == "kustomization.yaml" {
			continue
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if len(u.Object) > 0 {
				out = append(out, u)
			}
		}
	}
	return out
}
