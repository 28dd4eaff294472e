package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// Growing the server's volume.
//
// A StatefulSet's volumeClaimTemplates are immutable: an update that changes them is refused,
// so ensureStatefulSet writes them at creation only and never touches them again; the
// template keeps the size the StatefulSet was created with. The claim the StatefulSet
// controller made from it (<template>-<statefulset>-0) is what holds the data, and a bound
// claim's storage request may grow. So when spec.storage.size grows, the operator patches
// that claim's request, as VolSync and CloudNativePG do, provided its StorageClass allows
// volume expansion (the API server's PersistentVolumeClaimResize admission refuses it
// otherwise). The StorageReady condition follows the expansion to the end. Shrinking is
// refused by the CRD's validation, since no volume can shrink.

// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=storage.k8s.io,resources=storageclasses,verbs=get

// volumeClaimCacheOptions keeps only the servers' claims in the manager's cache (the watch
// that notices a claim's progress): caching every claim of the cluster is not needed.
func volumeClaimCacheOptions() cache.ByObject {
	return cache.ByObject{Label: labels.SelectorFromSet(labels.Set{syncv1.LabelName: "syncserver", syncv1.LabelComponent: "server"})}
}

// folderOfClaim maps a server's claim to its folder by the instance label the claim
// inherits from the volume claim template.
func folderOfClaim(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[syncv1.LabelInstance]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
}

// normalStorageReason reports whether a StorageReady reason is progress, not trouble, so
// its event is Normal.
func normalStorageReason(reason string) bool {
	switch reason {
	case syncv1.ReasonVolumeClaimPending, syncv1.ReasonVolumeResizing, syncv1.ReasonFileSystemResizePending:
		return true
	}
	return false
}

// ensureStorage grows the server's claim to spec.storage.size when the size grew, and
// records StorageReady in obs. It runs after ensureStatefulSet, whose object names the claim.
func (r *SyncedFolderReconciler) ensureStorage(ctx context.Context, f *syncv1.SyncedFolder, obs *observed) error {
	sts := obs.sts
	if sts == nil || sts.CreationTimestamp.IsZero() || len(sts.Spec.VolumeClaimTemplates) == 0 {
		obs.storage = storageCondition(metav1.ConditionUnknown, syncv1.ReasonVolumeClaimPending, "the server's StatefulSet does not exist yet")
		return nil
	}
	name := fmt.Sprintf("%s-%s-0", sts.Spec.VolumeClaimTemplates[0].Name, sts.Name)
	want := f.Spec.Storage.Size
	// Read uncached: the claim's name is known, and a claim whose labels were changed must
	// not look absent.
	pvc := &corev1.PersistentVolumeClaim{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: f.Namespace, Name: name}, pvc)
	if apierrors.IsNotFound(err) {
		obs.storage = storageCondition(metav1.ConditionUnknown, syncv1.ReasonVolumeClaimPending,
			fmt.Sprintf("PVC %q does not exist yet: the StatefulSet controller creates it with the server's first pod", name))
		return nil
	}
	if err != nil {
		return fmt.Errorf("get PVC %q: %w", name, err)
	}
	if pvc.Status.Phase != corev1.ClaimBound {
		// Only a bound claim's request may change; binding is an event that brings us back.
		obs.storage = storageCondition(metav1.ConditionUnknown, syncv1.ReasonVolumeClaimPending,
			fmt.Sprintf("PVC %q is %s, not bound to a volume yet", name, pvc.Status.Phase))
		return nil
	}
	requested := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if requested.Cmp(want) < 0 {
		expanded, err := r.expandClaim(ctx, pvc, want, obs)
		if err != nil || !expanded {
			return err
		}
		requested = want
	}
	obs.storage = claimProgress(pvc, requested, want)
	return nil
}

// expandClaim patches the claim's storage request to want when its StorageClass allows
// expansion. It reports whether it did; a refusal is recorded in obs, not returned, since
// retrying cannot change it (a changed StorageClass or spec brings a new reconcile).
func (r *SyncedFolderReconciler) expandClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim, want resource.Quantity, obs *observed) (bool, error) {
	requested := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	refuse := func(why string) (bool, error) {
		obs.storage = storageCondition(metav1.ConditionFalse, syncv1.ReasonVolumeExpansionNotAllowed,
			fmt.Sprintf("spec.storage.size asks for %s but PVC %q stays at %s: %s", want.String(), pvc.Name, requested.String(), why))
		return false, nil
	}
	class := ptr.Deref(pvc.Spec.StorageClassName, "")
	if class == "" {
		return refuse("it has no StorageClass, and only dynamically provisioned volumes can be expanded")
	}
	sc := &storagev1.StorageClass{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Name: class}, sc)
	if apierrors.IsNotFound(err) {
		return refuse(fmt.Sprintf("its StorageClass %q does not exist", class))
	}
	if err != nil {
		return false, fmt.Errorf("get StorageClass %q: %w", class, err)
	}
	if !ptr.Deref(sc.AllowVolumeExpansion, false) {
		return refuse(fmt.Sprintf("StorageClass %q does not allow volume expansion (allowVolumeExpansion is not true)", class))
	}
	patch := client.MergeFrom(pvc.DeepCopy())
	if pvc.Spec.Resources.Requests == nil {
		pvc.Spec.Resources.Requests = corev1.ResourceList{}
	}
	pvc.Spec.Resources.Requests[corev1.ResourceStorage] = want
	if err := r.Patch(ctx, pvc, patch); err != nil {
		if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
			// Admission (the StorageClass changed under us, a ResourceQuota) or validation
			// refused it: say why and wait for a change rather than retry in a loop.
			obs.storage = storageCondition(metav1.ConditionFalse, syncv1.ReasonVolumeResizeFailed,
				truncate(fmt.Sprintf("the API server refused to expand PVC %q from %s to %s: %v", pvc.Name, requested.String(), want.String(), err)))
			return false, nil
		}
		obs.storage = storageCondition(metav1.ConditionFalse, syncv1.ReasonVolumeResizeFailed,
			truncate(fmt.Sprintf("expand PVC %q from %s to %s: %v", pvc.Name, requested.String(), want.String(), err)))
		return false, fmt.Errorf("expand PVC %q to %s: %w", pvc.Name, want.String(), err)
	}
	return true, nil
}

// claimProgress is StorageReady for a bound claim that requests at least want: done when
// its capacity reached the request, else where the expansion stands.
func claimProgress(pvc *corev1.PersistentVolumeClaim, requested, want resource.Quantity) metav1.Condition {
	for _, c := range pvc.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case corev1.PersistentVolumeClaimControllerResizeError, corev1.PersistentVolumeClaimNodeResizeError:
			return storageCondition(metav1.ConditionFalse, syncv1.ReasonVolumeResizeFailed,
				truncate(fmt.Sprintf("expanding PVC %q to %s failed (%s): %s", pvc.Name, requested.String(), c.Type, c.Message)))
		}
	}
	for res, st := range pvc.Status.AllocatedResourceStatuses {
		if res == corev1.ResourceStorage && (st == corev1.PersistentVolumeClaimControllerResizeInfeasible || st == corev1.PersistentVolumeClaimNodeResizeInfeasible) {
			return storageCondition(metav1.ConditionFalse, syncv1.ReasonVolumeResizeFailed,
				fmt.Sprintf("expanding PVC %q to %s is infeasible (%s); lower the claim's request to recover", pvc.Name, requested.String(), st))
		}
	}
	capacity := pvc.Status.Capacity[corev1.ResourceStorage]
	for _, c := range pvc.Status.Conditions {
		if c.Type == corev1.PersistentVolumeClaimFileSystemResizePending && c.Status == corev1.ConditionTrue {
			return storageCondition(metav1.ConditionFalse, syncv1.ReasonFileSystemResizePending,
				fmt.Sprintf("the volume of PVC %q grew to %s; its file system grows when the kubelet next expands it (for some drivers, when the server's pod restarts)", pvc.Name, requested.String()))
		}
	}
	resizing := false
	for _, c := range pvc.Status.Conditions {
		resizing = resizing || (c.Type == corev1.PersistentVolumeClaimResizing && c.Status == corev1.ConditionTrue)
	}
	if resizing || capacity.Cmp(requested) < 0 {
		return storageCondition(metav1.ConditionFalse, syncv1.ReasonVolumeResizing,
			fmt.Sprintf("PVC %q is being expanded from %s to %s by the storage provider", pvc.Name, capacity.String(), requested.String()))
	}
	msg := fmt.Sprintf("PVC %q has %s; spec.storage.size asks for %s", pvc.Name, capacity.String(), want.String())
	if requested.Cmp(want) > 0 {
		msg = fmt.Sprintf("PVC %q has %s, more than spec.storage.size %s (a volume cannot shrink)", pvc.Name, capacity.String(), want.String())
	}
	return storageCondition(metav1.ConditionTrue, syncv1.ReasonVolumeReady, msg)
}

// storageCondition builds StorageReady.
func storageCondition(status metav1.ConditionStatus, reason, message string) metav1.Condition {
	return metav1.Condition{Type: syncv1.ConditionStorageReady, Status: status, Reason: reason, Message: message}
}
