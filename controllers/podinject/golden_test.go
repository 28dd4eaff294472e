package podinject

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from the current mutation")

// goldenConfig is the operator configuration of every golden case.
var goldenConfig = Config{AgentImage: "ghcr.io/syncedfolder/synced-folder:test", OperatorNamespace: "synced-folder-system"}

// TestGolden runs each testdata/NAME.input.yaml (an optional SyncedFolder and a Pod) through
// the mutation and compares the resulting pod with testdata/NAME.golden.yaml. Regenerate
// with `go test ./controllers/podinject -run TestGolden -update` and review the diff.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.input.yaml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".input.yaml")
		t.Run(name, func(t *testing.T) {
			pod, folder := readInput(t, in)
			got, _ := mutate(pod, folder, goldenConfig, nil)
			out, err := yaml.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("mutation of %s differs from %s (run with -update and review the diff):\n%s", in, golden, lineDiff(string(want), string(out)))
			}
		})
	}
}

// readInput decodes the Pod and the optional SyncedFolder of a golden input.
func readInput(t *testing.T, file string) (*corev1.Pod, *syncv1.SyncedFolder) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	var folder *syncv1.SyncedFolder
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		switch u.GetKind() {
		case "Pod":
			pod = &corev1.Pod{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, pod); err != nil {
				t.Fatal(err)
			}
		case "SyncedFolder":
			folder = &syncv1.SyncedFolder{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, folder); err != nil {
				t.Fatal(err)
			}
		case "":
		default:
			t.Fatalf("%s: unexpected kind %q", file, u.GetKind())
		}
	}
	if pod == nil {
		t.Fatalf("%s: no Pod", file)
	}
	return pod, folder
}

// lineDiff lists the lines that differ, enough to see what changed without a diff tool.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  - %s\n  + %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}
