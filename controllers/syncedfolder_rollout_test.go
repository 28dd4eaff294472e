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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestStuckOnOldRevision(t *testing.T) {
	sts := func(current, update string, observed, generation int64) *appsv1.StatefulSet {
		return &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: "docs", Generation: generation},
			Status:     appsv1.StatefulSetStatus{CurrentRevision: current, UpdateRevision: update, ObservedGeneration: observed},
		}
	}
	waiting := func(reason string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: "syncserver", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}
	}
	pod := func(revision string, ready bool, deleting bool, statuses ...corev1.ContainerStatus) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "docs-0", Labels: map[string]string{appsv1.ControllerRevisionHashLabelKey: revision}}}
		if ready {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}
		if deleting {
			p.DeletionTimestamp = &metav1.Time{Time: time.Unix(1, 0)}
		}
		p.Status.ContainerStatuses = statuses
		return p
	}
	tests := []struct {
		name string
		sts  *appsv1.StatefulSet
		pod  *corev1.Pod
		want string
	}{
		{"old revision, image cannot be pulled", sts("r1", "r2", 2, 2), pod("r1", false, false, waiting("ImagePullBackOff")), "container syncserver: ImagePullBackOff"},
		{"old revision, crash loop", sts("r1", "r2", 2, 2), pod("r1", false, false, waiting("CrashLoopBackOff")), "container syncserver: CrashLoopBackOff"},
		{"old revision, init container stuck", sts("r1", "r2", 2, 2), func() *corev1.Pod {
			p := pod("r1", false, false)
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull"}}}}
			return p
		}(), "container init: ErrImagePull"},
		{"old revision but Ready: the StatefulSet rolls it", sts("r1", "r2", 2, 2), pod("r1", true, false, waiting("CrashLoopBackOff")), ""},
		{"old revision, only starting", sts("r1", "r2", 2, 2), pod("r1", false, false, waiting("ContainerCreating")), ""},
		{"current revision stuck: a new pod would be the same", sts("r1", "r2", 2, 2), pod("r2", false, false, waiting("ImagePullBackOff")), ""},
		{"already being deleted", sts("r1", "r2", 2, 2), pod("r1", false, true, waiting("ImagePullBackOff")), ""},
		{"StatefulSet status not caught up with its spec", sts("r1", "r2", 1, 2), pod("r1", false, false, waiting("ImagePullBackOff")), ""},
		{"no revision known yet", sts("", "", 1, 1), pod("r1", false, false, waiting("ImagePullBackOff")), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stuckOnOldRevision(tt.sts, tt.pod); got != tt.want {
				t.Errorf("stuckOnOldRevision = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestStuckServerPodIsReplaced plays the StatefulSet controller and the kubelet (envtest runs
// neither): the StatefulSet's status says a new revision waits, the server pod is of the old
// one and cannot pull its image. The operator deletes exactly that pod and says so (which
// pods it leaves alone is TestStuckOnOldRevision's table).
func TestStuckServerPodIsReplaced(t *testing.T) {
	needEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	f := createFolder(t, ns, "stuck", nil)
	sts := &appsv1.StatefulSet{}
	eventually(t, 30*time.Second, func() error { return get(ns, "stuck", sts) })

	newPod := func() *corev1.Pod {
		t.Helper()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "stuck-0", Namespace: ns, Labels: map[string]string{appsv1.ControllerRevisionHashLabelKey: "stuck-old"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "syncserver", Image: "localhost/nobody/loaded:this"}}},
		}
		if err := suite.client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "syncserver",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}}
		if err := suite.client.Status().Update(ctx, pod); err != nil {
			t.Fatal(err)
		}
		return pod
	}
	// pendingRollout writes the status the StatefulSet controller writes when a new template
	// waits; a status change is also what wakes the operator.
	pendingRollout := func(update string) {
		t.Helper()
		if err := get(ns, "stuck", sts); err != nil {
			t.Fatal(err)
		}
		sts.Status = appsv1.StatefulSetStatus{ObservedGeneration: sts.Generation, Replicas: 1,
			CurrentRevision: "stuck-old", UpdateRevision: update}
		if err := suite.client.Status().Update(ctx, sts); err != nil {
			t.Fatal(err)
		}
	}

	// A stuck pod of the old revision: deleted, with an event naming why.
	stuck := newPod()
	pendingRollout("stuck-new")
	eventually(t, 30*time.Second, func() error {
		p := &corev1.Pod{}
		err := get(ns, "stuck-0", p)
		if err == nil && p.UID == stuck.UID && p.DeletionTimestamp == nil {
			return fmt.Errorf("stuck pod still there")
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return nil
	})
	eventually(t, 10*time.Second, func() error {
		var list eventsv1.EventList
		if err := suite.client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.UID == f.UID && e.Reason == reasonServerPodReplaced && e.Type == corev1.EventTypeWarning &&
				strings.Contains(e.Note, "ImagePullBackOff") && strings.Contains(e.Note, "stuck-new") {
				return nil
			}
		}
		return fmt.Errorf("no %s event yet", reasonServerPodReplaced)
	})
}
