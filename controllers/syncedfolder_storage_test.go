package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// newStorageClass creates a cluster-scoped StorageClass named after the test's namespace.
func newStorageClass(t *testing.T, ns string, expandable bool) string {
	t.Helper()
	sc := &storagev1.StorageClass{
		ObjectMeta:           metav1.ObjectMeta{Name: ns},
		Provisioner:          "example.org/test",
		AllowVolumeExpansion: ptr.To(expandable),
	}
	if err := suite.client.Create(context.Background(), sc); err != nil {
		t.Fatalf("create StorageClass: %v", err)
	}
	t.Cleanup(func() { _ = suite.client.Delete(context.Background(), sc) })
	return sc.Name
}

// bindServerClaim plays the StatefulSet and volume controllers, which envtest does not run:
// it creates the claim of the server's pod from the StatefulSet's template and binds it with
// the template's size as capacity.
func bindServerClaim(t *testing.T, sts *appsv1.StatefulSet) *corev1.PersistentVolumeClaim {
	t.Helper()
	vct := sts.Spec.VolumeClaimTemplates[0]
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-%s-0", vct.Name, sts.Name), Namespace: sts.Namespace, Labels: vct.Labels,
		},
		Spec: *vct.Spec.DeepCopy(),
	}
	pvc.Spec.VolumeName = "pv-" + sts.Namespace
	ctx := context.Background()
	if err := suite.client.Create(ctx, pvc); err != nil {
		t.Fatalf("create PVC: %v", err)
	}
	pvc.Status = corev1.PersistentVolumeClaimStatus{
		Phase:       corev1.ClaimBound,
		AccessModes: pvc.Spec.AccessModes,
		Capacity:    corev1.ResourceList{corev1.ResourceStorage: pvc.Spec.Resources.Requests[corev1.ResourceStorage]},
	}
	if err := suite.client.Status().Update(ctx, pvc); err != nil {
		t.Fatalf("bind PVC: %v", err)
	}
	return pvc
}

// setClaimStatus plays the volume expander: it writes the claim's capacity and conditions.
func setClaimStatus(t *testing.T, ns, name string, capacity string, conds ...corev1.PersistentVolumeClaimConditionType) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		pvc := &corev1.PersistentVolumeClaim{}
		if err := get(ns, name, pvc); err != nil {
			return err
		}
		pvc.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(capacity)}
		pvc.Status.Conditions = nil
		for _, c := range conds {
			pvc.Status.Conditions = append(pvc.Status.Conditions, corev1.PersistentVolumeClaimCondition{
				Type: c, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now(),
			})
		}
		return suite.client.Status().Update(context.Background(), pvc)
	})
}

// resizeFolder sets spec.storage.size (and optionally the server image) of a folder.
func resizeFolder(t *testing.T, ns, name, size, image string) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		f := &syncv1.SyncedFolder{}
		if err := get(ns, name, f); err != nil {
			return err
		}
		f.Spec.Storage.Size = resource.MustParse(size)
		if image != "" {
			f.Spec.Server.Image = image
		}
		return suite.client.Update(context.Background(), f)
	})
}

func claimRequest(t *testing.T, ns, name string) resource.Quantity {
	t.Helper()
	pvc := &corev1.PersistentVolumeClaim{}
	if err := get(ns, name, pvc); err != nil {
		t.Fatal(err)
	}
	return pvc.Spec.Resources.Requests[corev1.ResourceStorage]
}

func TestStorageGrowsTheServerClaim(t *testing.T) {
	needEnv(t)
	ns := newNamespace(t)
	class := newStorageClass(t, ns, true)
	f := createFolder(t, ns, "grow", func(f *syncv1.SyncedFolder) {
		f.Spec.Storage.Size = resource.MustParse("1Gi")
		f.Spec.Storage.StorageClassName = ptr.To(class)
	})
	sts := waitOwned(t, f)["StatefulSet grow"].(*appsv1.StatefulSet)
	waitCondition(t, ns, "grow", syncv1.ConditionStorageReady, metav1.ConditionUnknown, syncv1.ReasonVolumeClaimPending)

	pvc := bindServerClaim(t, sts)
	if pvc.Name != "data-grow-0" {
		t.Fatalf("claim name %q", pvc.Name)
	}
	waitCondition(t, ns, "grow", syncv1.ConditionStorageReady, metav1.ConditionTrue, syncv1.ReasonVolumeReady)

	// Growing the size (with an image change in the same update) patches the claim, and the
	// StatefulSet keeps taking updates with its template at the size it was created with.
	resizeFolder(t, ns, "grow", "3Gi", "example.org/sync:v3")
	got := waitCondition(t, ns, "grow", syncv1.ConditionStorageReady, metav1.ConditionFalse, syncv1.ReasonVolumeResizing)
	if q := claimRequest(t, ns, pvc.Name); q.String() != "3Gi" {
		t.Errorf("claim requests %s after the resize, want 3Gi", q.String())
	}
	if c, _ := folderCondition(got, syncv1.ConditionStorageReady); !strings.Contains(c.Message, "from 1Gi to 3Gi") {
		t.Errorf("StorageReady message %q", c.Message)
	}
	eventually(t, 30*time.Second, func() error {
		if err := get(ns, "grow", sts); err != nil {
			return err
		}
		if img := sts.Spec.Template.Spec.Containers[0].Image; img != "example.org/sync:v3" {
			return fmt.Errorf("server image %q", img)
		}
		return nil
	})
	if q := sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != "1Gi" {
		t.Errorf("volume claim template changed to %s", q.String())
	}

	// The controller grew the volume; the file system waits for the kubelet.
	setClaimStatus(t, ns, pvc.Name, "3Gi", corev1.PersistentVolumeClaimFileSystemResizePending)
	waitCondition(t, ns, "grow", syncv1.ConditionStorageReady, metav1.ConditionFalse, syncv1.ReasonFileSystemResizePending)
	setClaimStatus(t, ns, pvc.Name, "3Gi", corev1.PersistentVolumeClaimNodeResizeError)
	waitCondition(t, ns, "grow", syncv1.ConditionStorageReady, metav1.ConditionFalse, syncv1.ReasonVolumeResizeFailed)
	setClaimStatus(t, ns, pvc.Name, "3Gi")
	got = waitCondition(t, ns, "grow", syncv1.ConditionStorageReady, metav1.ConditionTrue, syncv1.ReasonVolumeReady)
	if c, _ := folderCondition(got, syncv1.ConditionStorageReady); !strings.Contains(c.Message, "3Gi") {
		t.Errorf("StorageReady message %q", c.Message)
	}

	// Each step was one event; progress is Normal, a failure a Warning.
	eventually(t, 10*time.Second, func() error {
		types := storageEvents(ns, f.UID)
		for reason, want := range map[string]string{
			syncv1.ReasonVolumeResizing:          corev1.EventTypeNormal,
			syncv1.ReasonFileSystemResizePending: corev1.EventTypeNormal,
			syncv1.ReasonVolumeResizeFailed:      corev1.EventTypeWarning,
		} {
			if got := types[reason]; len(got) != 1 || got[0] != want {
				return fmt.Errorf("events of reason %s: %v, want one %s (all: %v)", reason, got, want, types)
			}
		}
		return nil
	})
}

// storageEvents returns the types of the folder's events by reason.
func storageEvents(ns string, uid types.UID) map[string][]string {
	var list eventsv1.EventList
	out := map[string][]string{}
	if err := suite.client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		return out
	}
	for _, e := range list.Items {
		if e.Regarding.UID == uid {
			out[e.Reason] = append(out[e.Reason], e.Type)
		}
	}
	return out
}

func TestStorageExpansionNotAllowed(t *testing.T) {
	needEnv(t)
	ns := newNamespace(t)
	class := newStorageClass(t, ns, false)
	f := createFolder(t, ns, "fixed", func(f *syncv1.SyncedFolder) {
		f.Spec.Storage.Size = resource.MustParse("1Gi")
		f.Spec.Storage.StorageClassName = ptr.To(class)
	})
	sts := waitOwned(t, f)["StatefulSet fixed"].(*appsv1.StatefulSet)
	pvc := bindServerClaim(t, sts)
	waitCondition(t, ns, "fixed", syncv1.ConditionStorageReady, metav1.ConditionTrue, syncv1.ReasonVolumeReady)
	before := &corev1.PersistentVolumeClaim{}
	if err := get(ns, pvc.Name, before); err != nil {
		t.Fatal(err)
	}

	resizeFolder(t, ns, "fixed", "2Gi", "")
	got := waitCondition(t, ns, "fixed", syncv1.ConditionStorageReady, metav1.ConditionFalse, syncv1.ReasonVolumeExpansionNotAllowed)
	c, _ := folderCondition(got, syncv1.ConditionStorageReady)
	want := fmt.Sprintf(`spec.storage.size asks for 2Gi but PVC "data-fixed-0" stays at 1Gi: StorageClass %q does not allow volume expansion`, class)
	if !strings.Contains(c.Message, want) {
		t.Errorf("StorageReady message %q, want it to contain %q", c.Message, want)
	}
	// The server itself is unaffected: Ready does not wait on storage.
	if r, _ := folderCondition(got, syncv1.ConditionReady); r.Reason == syncv1.ReasonReconcileFailed {
		t.Errorf("Ready %s: %s", r.Reason, r.Message)
	}
	after := &corev1.PersistentVolumeClaim{}
	if err := get(ns, pvc.Name, after); err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("claim was written (resourceVersion %s → %s), requests %v", before.ResourceVersion, after.ResourceVersion, after.Spec.Resources.Requests)
	}
	eventually(t, 10*time.Second, func() error {
		if got := storageEvents(ns, f.UID)[syncv1.ReasonVolumeExpansionNotAllowed]; len(got) != 1 || got[0] != corev1.EventTypeWarning {
			return fmt.Errorf("VolumeExpansionNotAllowed events %v, want one Warning", got)
		}
		return nil
	})
}

// TestClaimProgress covers the states of a bound claim that envtest cannot produce through
// an API server round trip cheaply.
func TestClaimProgress(t *testing.T) {
	q := resource.MustParse
	claim := func(request, capacity string, mut func(*corev1.PersistentVolumeClaim)) *corev1.PersistentVolumeClaim {
		pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data-x-0"}}
		pvc.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: q(request)}
		pvc.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: q(capacity)}
		if mut != nil {
			mut(pvc)
		}
		return pvc
	}
	tests := []struct {
		name       string
		pvc        *corev1.PersistentVolumeClaim
		want       string
		status     metav1.ConditionStatus
		reason, in string
	}{
		{"done", claim("2Gi", "2Gi", nil), "2Gi", metav1.ConditionTrue, syncv1.ReasonVolumeReady, `PVC "data-x-0" has 2Gi`},
		{"provider rounded up", claim("2Gi", "10Gi", nil), "2Gi", metav1.ConditionTrue, syncv1.ReasonVolumeReady, "has 10Gi"},
		{"larger than spec", claim("5Gi", "5Gi", nil), "2Gi", metav1.ConditionTrue, syncv1.ReasonVolumeReady, "cannot shrink"},
		{"capacity behind", claim("4Gi", "2Gi", nil), "4Gi", metav1.ConditionFalse, syncv1.ReasonVolumeResizing, "from 2Gi to 4Gi"},
		{"controller error", claim("4Gi", "2Gi", func(p *corev1.PersistentVolumeClaim) {
			p.Status.Conditions = []corev1.PersistentVolumeClaimCondition{{Type: corev1.PersistentVolumeClaimControllerResizeError, Status: corev1.ConditionTrue, Message: "quota exceeded"}}
		}), "4Gi", metav1.ConditionFalse, syncv1.ReasonVolumeResizeFailed, "quota exceeded"},
		{"infeasible", claim("4Gi", "2Gi", func(p *corev1.PersistentVolumeClaim) {
			p.Status.AllocatedResourceStatuses = map[corev1.ResourceName]corev1.ClaimResourceStatus{corev1.ResourceStorage: corev1.PersistentVolumeClaimControllerResizeInfeasible}
		}), "4Gi", metav1.ConditionFalse, syncv1.ReasonVolumeResizeFailed, "infeasible"},
		{"condition not true", claim("4Gi", "4Gi", func(p *corev1.PersistentVolumeClaim) {
			p.Status.Conditions = []corev1.PersistentVolumeClaimCondition{{Type: corev1.PersistentVolumeClaimFileSystemResizePending, Status: corev1.ConditionFalse}}
		}), "4Gi", metav1.ConditionTrue, syncv1.ReasonVolumeReady, "has 4Gi"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := claimProgress(tc.pvc, tc.pvc.Spec.Resources.Requests[corev1.ResourceStorage], q(tc.want))
			if got.Type != syncv1.ConditionStorageReady || got.Status != tc.status || got.Reason != tc.reason || !strings.Contains(got.Message, tc.in) {
				t.Errorf("got %s %s/%s %q, want %s/%s containing %q", got.Type, got.Status, got.Reason, got.Message, tc.status, tc.reason, tc.in)
			}
		})
	}
}
