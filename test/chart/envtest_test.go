package chart

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/syncedfolder/synced-folder/internal/envtestassets"
)

// TestChartInstallsIntoAPIServer installs the chart (with the optional monitoring and
// dashboard parts on) into a real kube-apiserver: every rendered object first passes a
// strict-field-validation dry run, then `helm install` creates them, a SyncedFolder is
// accepted by the installed CRD, `helm upgrade` applies cleanly, and `helm uninstall` leaves
// the CRD (resource-policy keep). cert-manager objects stay out: envtest has no cert-manager.
func TestChartInstallsIntoAPIServer(t *testing.T) {
	values := []string{"metrics.serviceMonitor.enabled=true", "agent.podMonitor.enabled=true", "grafana.dashboards.enabled=true"}
	stream := render(t, values...)
	decodeAll(t, stream) // strict typed decoding first: clearer errors than the API server's
	env := &envtest.Environment{
		BinaryAssetsDirectory: envtestassets.DirOrSkip(t),
		// The Prometheus Operator CRDs, generated from the typed structs by hack/generate.sh.
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "test", "crds")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: releaseNS}}); err != nil {
		t.Fatal(err)
	}

	var objs []*unstructured.Unstructured
	for _, d := range docs(stream) {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(d, &u.Object); err != nil {
			t.Fatal(err)
		}
		if u.GetNamespace() != "" && u.GetNamespace() != releaseNS {
			t.Fatalf("%s/%s renders into namespace %q", u.GetKind(), u.GetName(), u.GetNamespace())
		}
		objs = append(objs, u)
	}
	for _, u := range objs {
		if err := c.Create(ctx, u.DeepCopy(), client.FieldValidation("Strict"), client.DryRunAll); err != nil {
			t.Errorf("dry-run create %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	if t.Failed() {
		return
	}

	user, err := env.AddUser(envtest.User{Name: "helm", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	helmArgs := func(verb string) []string {
		args := []string{verb, releaseName, chartDir, "--kubeconfig", kc, "--namespace", releaseNS}
		for _, v := range values {
			args = append(args, "--set", v)
		}
		return args
	}
	notes := string(runHelm(t, helmArgs("install")...))
	for _, want := range []string{"kind: SyncedFolder", "sync.syncedfolder.io/folder:", "sync.syncedfolder.io/volume:"} {
		if !strings.Contains(notes, want) {
			t.Errorf("helm install NOTES lack %q:\n%s", want, notes)
		}
	}
	for _, u := range objs {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(u.GroupVersionKind())
		if err := c.Get(ctx, client.ObjectKeyFromObject(u), got); err != nil {
			t.Errorf("after helm install, %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
	waitEstablished(ctx, t, c, "syncedfolders.sync.syncedfolder.io")

	// The installed CRD serves SyncedFolders: the smallest sample is accepted.
	b, err := os.ReadFile(filepath.Join(root, "config", "samples", "sync_v1alpha1_syncedfolder.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sample := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(b, &sample.Object); err != nil {
		t.Fatal(err)
	}
	sample.SetNamespace("default")
	if err := c.Create(ctx, sample, client.FieldValidation("Strict")); err != nil {
		t.Fatalf("create the sample SyncedFolder: %v", err)
	}

	runHelm(t, helmArgs("upgrade")...)
	runHelm(t, "uninstall", releaseName, "--kubeconfig", kc, "--namespace", releaseNS, "--wait=false")
	var crd apiextensionsv1.CustomResourceDefinition
	if err := c.Get(ctx, client.ObjectKey{Name: "syncedfolders.sync.syncedfolder.io"}, &crd); err != nil || crd.DeletionTimestamp != nil {
		t.Errorf("helm uninstall removed the CRD (and every SyncedFolder): %v", err)
	}
	var dep unstructured.Unstructured
	dep.SetAPIVersion("apps/v1")
	dep.SetKind("Deployment")
	if err := c.Get(ctx, client.ObjectKey{Namespace: releaseNS, Name: managerName}, &dep); err == nil && dep.GetDeletionTimestamp() == nil {
		t.Error("helm uninstall left the manager Deployment")
	}
}

func waitEstablished(ctx context.Context, t *testing.T, c client.Client, name string) {
	t.Helper()
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &crd); err != nil {
			return false, err
		}
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(fmt.Errorf("wait for CRD %q to be established: %w", name, err))
	}
}
