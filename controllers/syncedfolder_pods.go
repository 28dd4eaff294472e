package controllers

import (
	"context"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// maxUninjectedPods caps the pod names kept in status.uninjectedPods; the count is exact.
const maxUninjectedPods = 20

// Event reasons of the injection safety net.
const (
	reasonPodsNotInjected = "PodsNotInjected"
	reasonPodsInjected    = "PodsInjected"
)

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// podMetadata is the pods' metadata-only type: the safety net needs annotations alone, and
// a metadata informer holds far less of every pod of the cluster than a typed one.
func podMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	return m
}

// reportUninjectedPods is the webhook's safety net: it finds the pods of the folder's
// namespace that opt into the folder but carry no injected annotation (the webhook was down
// with failurePolicy Ignore, or refused them), writes them into the status, and records an
// event when that set changes. A failed list keeps the previous figures: they are a report,
// not a reason to fail the reconcile.
func (r *SyncedFolderReconciler) reportUninjectedPods(ctx context.Context, f *syncv1.SyncedFolder) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := r.List(ctx, list, client.InNamespace(f.Namespace)); err != nil {
		log.FromContext(ctx).Error(err, "list pods for the injection safety net")
		return
	}
	var names []string
	for _, p := range list.Items {
		if uninjected(&p, f.Name) {
			names = append(names, p.Name)
		}
	}
	slices.Sort(names)
	before := f.Status.UninjectedPods
	f.Status.UninjectedPodCount = int32(len(names))
	f.Status.UninjectedPods = names[:min(len(names), maxUninjectedPods)]
	if slices.Equal(before, f.Status.UninjectedPods) {
		return
	}
	if len(names) == 0 {
		r.Recorder.Eventf(f, nil, corev1.EventTypeNormal, reasonPodsInjected, "Reconcile", "every pod that opts into this folder runs the sync agent")
		return
	}
	r.Recorder.Eventf(f, nil, corev1.EventTypeWarning, reasonPodsNotInjected, "Reconcile",
		"%d pod(s) opt into this folder but run without the sync agent (webhook down or injection refused; see their %s annotation) and do not sync until recreated: %s",
		len(names), syncv1.AnnotationInjectionStatus, strings.Join(f.Status.UninjectedPods, ", "))
}

// uninjected reports whether the pod opts into folder and the webhook did not inject it.
// Terminating pods are left out: recreating them is already under way.
func uninjected(p client.Object, folder string) bool {
	ann := p.GetAnnotations()
	if ann[syncv1.AnnotationFolder] != folder || !p.GetDeletionTimestamp().IsZero() {
		return false
	}
	_, injected := ann[syncv1.AnnotationInjected]
	return !injected
}

// watchOptInPods re-reconciles a folder when a pod opting into it comes, changes or goes.
func (r *SyncedFolderReconciler) watchOptInPods(b *builder.Builder) *builder.Builder {
	return b.WatchesMetadata(podMetadata(),
		handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: o.GetAnnotations()[syncv1.AnnotationFolder]}}}
		}),
		builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetAnnotations()[syncv1.AnnotationFolder] != ""
		})))
}

// stripPodMetadata is the cache transform of pods: the safety net reads only the name,
// namespace, deletion timestamp and the sync.syncedfolder.io annotations, so everything else
// (managed fields above all) is dropped before it is stored for every pod of the cluster.
func stripPodMetadata(obj any) (any, error) {
	o, ok := obj.(client.Object)
	if !ok {
		return obj, nil
	}
	o.SetManagedFields(nil)
	o.SetLabels(nil)
	o.SetOwnerReferences(nil)
	o.SetFinalizers(nil)
	var keep map[string]string
	for k, v := range o.GetAnnotations() {
		if strings.HasPrefix(k, "sync.syncedfolder.io/") {
			if keep == nil {
				keep = map[string]string{}
			}
			keep[k] = v
		}
	}
	o.SetAnnotations(keep)
	return o, nil
}
