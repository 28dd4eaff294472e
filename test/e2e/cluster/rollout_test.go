//go:build e2e

package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// broken is the SyncedFolder created with a server image nobody loaded.
const broken = "broken"

// testStuckRollout creates a folder whose server image cannot be pulled (a localhost name:
// containerd's attempt dies on loopback), waits until the server pod is stuck on it, then
// fixes the spec. The StatefulSet controller alone would leave the stuck pod of the old
// revision in place forever; the operator replaces it, says so in an event, and the folder
// becomes Ready.
func (e *env) testStuckRollout(t *testing.T, ns string) {
	f := &syncv1.SyncedFolder{
		ObjectMeta: metav1.ObjectMeta{Name: broken, Namespace: ns},
		Spec: syncv1.SyncedFolderSpec{
			Storage: syncv1.StorageSpec{Size: resource.MustParse("1Gi")},
			Server:  syncv1.ServerSpec{Image: "localhost/synced-folder/absent:v0"},
		},
	}
	if err := e.c.Create(e.ctx, f); err != nil {
		t.Fatalf("create SyncedFolder %s/%s: %v", ns, broken, err)
	}
	t.Cleanup(func() { _ = e.c.Delete(e.ctx, f) })
	pod := broken + "-0"
	poll(t, readyTimeout, "server pod "+pod+" stuck pulling its image", func() (bool, error) {
		var p corev1.Pod
		if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: pod}, &p); err != nil {
			return false, err
		}
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
				return true, nil
			}
		}
		return false, fmt.Errorf("not stuck yet: %s", containerStates(&p))
	})

	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: broken}, f); err != nil {
		t.Fatal(err)
	}
	f.Spec.Server.Image = "" // back to the operator's own image
	if err := e.c.Update(e.ctx, f); err != nil {
		t.Fatalf("fix the server image: %v", err)
	}
	start := time.Now()
	poll(t, readyTimeout, "SyncedFolder "+broken+" Ready after the fix", func() (bool, error) { return e.folderReady(ns, broken) })
	t.Logf("Ready %.1fs after the fix", time.Since(start).Seconds())
	poll(t, syncTimeout, "a ServerPodReplaced event", func() (bool, error) {
		var list corev1.EventList
		if err := e.c.List(e.ctx, &list, client.InNamespace(ns)); err != nil {
			return false, err
		}
		for _, ev := range list.Items {
			if ev.InvolvedObject.UID == f.UID && ev.Reason == "ServerPodReplaced" && strings.Contains(ev.Message, "ImagePull") {
				return true, nil
			}
		}
		return false, fmt.Errorf("none among %d events", len(list.Items))
	})
	if err := e.c.Delete(e.ctx, f); err != nil {
		t.Fatalf("delete SyncedFolder %s: %v", broken, err)
	}
}
