package controllers

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// Unsticking the server's rollout.
//
// The StatefulSet controller replaces a pod of an older revision only once that pod is Ready
// (kubernetes/kubernetes#67250): a server created from a template that cannot start (an
// image nobody can pull, a crash loop) stays broken after the spec is fixed, until someone
// deletes the pod by hand. The operator does that for its one server pod, and only when the
// pod is of an older revision than the StatefulSet's and is stuck for a reason the new
// revision may cure: the pod holds no data (the claim does), and a pod that is not Ready
// serves nobody, so nothing is lost or disrupted.

// +kubebuilder:rbac:groups="",resources=pods,verbs=delete

// reasonServerPodReplaced is the event of a stuck server pod deleted for the new revision.
const reasonServerPodReplaced = "ServerPodReplaced"

// stuckWaitingReasons are the container waiting reasons that only a new pod can leave.
var stuckWaitingReasons = map[string]bool{
	"ErrImagePull":               true,
	"ImagePullBackOff":           true,
	"InvalidImageName":           true,
	"CrashLoopBackOff":           true,
	"CreateContainerConfigError": true,
	"CreateContainerError":       true,
}

// stuckOnOldRevision reports why pod, the server pod of sts, must be deleted for the
// StatefulSet to roll it: it is of an older revision than sts.Status.UpdateRevision, not
// Ready, not already going away, and one of its containers waits for a reason that only a
// new pod leaves. An empty reason means: leave it to the StatefulSet controller.
func stuckOnOldRevision(sts *appsv1.StatefulSet, pod *corev1.Pod) string {
	update := sts.Status.UpdateRevision
	if update == "" || sts.Status.ObservedGeneration < sts.Generation ||
		pod.DeletionTimestamp != nil || pod.Labels[appsv1.ControllerRevisionHashLabelKey] == update {
		return ""
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return ""
		}
	}
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, cs := range list {
			if w := cs.State.Waiting; w != nil && stuckWaitingReasons[w.Reason] {
				return fmt.Sprintf("container %s: %s", cs.Name, w.Reason)
			}
		}
	}
	return ""
}

// unstickServerRollout deletes the server pod when stuckOnOldRevision says so, so that the
// StatefulSet recreates it from the current template. The pod is read from the API server
// (the manager caches no pod status) only while a rollout is pending.
func (r *SyncedFolderReconciler) unstickServerRollout(ctx context.Context, f *syncv1.SyncedFolder, sts *appsv1.StatefulSet) error {
	if sts == nil || sts.Status.UpdateRevision == "" || sts.Status.UpdateRevision == sts.Status.CurrentRevision {
		return nil
	}
	pod := &corev1.Pod{}
	name := sts.Name + "-0"
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: sts.Namespace, Name: name}, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("get server pod %q: %w", name, err)
	}
	why := stuckOnOldRevision(sts, pod)
	if why == "" {
		return nil
	}
	// The UID precondition deletes this pod only, never a successor of the same name.
	err := r.Delete(ctx, pod, client.Preconditions{UID: &pod.UID})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete stuck server pod %q: %w", name, err)
	}
	if err == nil {
		r.Recorder.Eventf(f, pod, corev1.EventTypeWarning, reasonServerPodReplaced, "Rollout",
			"server pod %s of revision %s was stuck (%s); deleted so that the StatefulSet recreates it at revision %s",
			name, pod.Labels[appsv1.ControllerRevisionHashLabelKey], why, sts.Status.UpdateRevision)
	}
	return nil
}
