package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/syncedfolder/synced-folder/internal/envtestassets"
)

// cs talks to an envtest API server (no controllers run there, so the test plays the PV
// controller's part by setting volume phases itself). Without one, tests skip, except with
// CI=true, where TestMain fails.
var cs kubernetes.Interface

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	assets, err := envtestassets.Dir()
	if err != nil {
		if envtestassets.Required() {
			fmt.Fprintf(os.Stderr, "envtest control plane is required (CI=true): %v\n", err)
			return 1
		}
		return m.Run()
	}
	// The machine is shared by many builds: a slow start is not a failure of this package.
	env := &envtest.Environment{BinaryAssetsDirectory: assets, ControlPlaneStartTimeout: 3 * time.Minute}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "start envtest: %v\n", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	cs = kubernetes.NewForConfigOrDie(cfg)
	return m.Run()
}

func needKube(t *testing.T) {
	t.Helper()
	if cs == nil {
		t.Skip("no envtest control plane (run hack/envtest.sh)")
	}
}

func claim(t *testing.T, ns, name, class string) *corev1.PersistentVolumeClaim {
	t.Helper()
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &class,
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}},
		},
	}
	c, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(context.Background(), c, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create claim: %v", err)
	}
	return c
}

func TestProvisionAndReclaim(t *testing.T) {
	needKube(t)
	ctx := context.Background()
	ns := "provision"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, sc := range []storagev1.StorageClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "ours"}, Provisioner: Provisioner},
		{ObjectMeta: metav1.ObjectMeta{Name: "theirs"}, Provisioner: "example.com/other"},
	} {
		if _, err := cs.StorageV1().StorageClasses().Create(ctx, &sc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mine := claim(t, ns, "mine", "ours")
	other := claim(t, ns, "other", "theirs")
	dir := t.TempDir()
	p := &provisioner{cs: cs, dir: dir}

	if err := p.pass(ctx); err != nil {
		t.Fatalf("pass: %v", err)
	}
	pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, "pvc-"+string(mine.UID), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no volume for the claim of our class: %v", err)
	}
	if r := pv.Spec.ClaimRef; r == nil || r.UID != mine.UID || r.Namespace != ns || r.Name != "mine" {
		t.Errorf("claimRef = %+v, want %s/mine uid %s", pv.Spec.ClaimRef, ns, mine.UID)
	}
	if got := pv.Spec.Capacity[corev1.ResourceStorage]; got.Cmp(resource.MustParse("2Gi")) != 0 {
		t.Errorf("capacity = %s, want 2Gi", got.String())
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || pv.Spec.StorageClassName != "ours" {
		t.Errorf("policy %s class %q, want Delete and ours", pv.Spec.PersistentVolumeReclaimPolicy, pv.Spec.StorageClassName)
	}
	path := pv.Spec.HostPath.Path
	if filepath.Dir(path) != dir {
		t.Errorf("volume path %q not under %q", path, dir)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o777 {
		t.Errorf("volume dir: %v, %v; want a 0777 directory", fi, err)
	}
	if _, err := cs.CoreV1().PersistentVolumes().Get(ctx, "pvc-"+string(other.UID), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a volume was made for another provisioner's claim: %v", err)
	}

	// A second pass changes nothing (the claim is still Pending: no PV controller here).
	if err := p.pass(ctx); err != nil {
		t.Fatalf("second pass: %v", err)
	}

	if err := os.WriteFile(filepath.Join(path, "data"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	pv.Status.Phase = corev1.VolumeReleased
	if _, err := cs.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := p.pass(ctx); err != nil {
		t.Fatalf("pass after release: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("released volume's dir still there: %v", err)
	}
	got, err := cs.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
	if err == nil && got.DeletionTimestamp == nil {
		t.Errorf("released volume %s not deleted", pv.Name)
	} else if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	for _, args := range [][2]string{{"", "/tmp"}, {"/nonexistent/kubeconfig", ""}, {"/nonexistent/kubeconfig", "relative"}, {"/nonexistent/kubeconfig", "/tmp"}} {
		if err := run(args[0], args[1], 0); err == nil {
			t.Errorf("run(%q, %q) succeeded", args[0], args[1])
		}
	}
}
