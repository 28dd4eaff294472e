package podinject

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// testPod is an opted-in pod in namespace "apps" whose app container mounts volume "data"
// at /data; mod changes it.
func testPod(mod func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps", Annotations: map[string]string{
			syncv1.AnnotationFolder: "shared",
			syncv1.AnnotationVolume: "data",
		}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "app", VolumeMounts: []corev1.VolumeMount{
				{Name: "data", MountPath: "/data"},
				{Name: "conf", MountPath: "/etc/app"},
			}}},
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "conf"}}}},
			},
		},
	}
	if mod != nil {
		mod(p)
	}
	return p
}

func testFolder() *syncv1.SyncedFolder {
	return &syncv1.SyncedFolder{ObjectMeta: metav1.ObjectMeta{Name: "shared", Namespace: "apps"}}
}

func TestShouldInject(t *testing.T) {
	ann := func(kv ...string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			for i := 0; i < len(kv); i += 2 {
				if kv[i+1] == "" {
					delete(p.Annotations, kv[i])
				} else {
					p.Annotations[kv[i]] = kv[i+1]
				}
			}
		}
	}
	deleting := testFolder()
	deleting.DeletionTimestamp = ptr.To(metav1.Now())
	cases := []struct {
		name    string
		pod     func(*corev1.Pod)
		folder  *syncv1.SyncedFolder
		inject  bool
		reason  string
		volume  string
		subPath string
		mode    syncv1.AgentMode
	}{
		{name: "not opted in", pod: ann(syncv1.AnnotationFolder, ""), folder: testFolder()},
		{name: "kube-system", pod: func(p *corev1.Pod) { p.Namespace = "kube-system" }, folder: testFolder()},
		{name: "operator namespace", pod: func(p *corev1.Pod) { p.Namespace = "synced-folder-system" }, folder: testFolder()},
		{name: "already injected by annotation", pod: ann(syncv1.AnnotationInjected, "shared"), folder: testFolder()},
		{name: "already has the agent container", pod: func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: AgentContainerName}}
		}, folder: testFolder()},
		{name: "unknown folder", folder: nil, reason: ReasonFolderNotFound},
		{name: "folder being deleted", folder: deleting, reason: ReasonFolderNotFound},
		{name: "no target annotation", pod: ann(syncv1.AnnotationVolume, ""), folder: testFolder(), reason: ReasonNoTarget},
		{name: "both target annotations", pod: ann(syncv1.AnnotationMountPath, "/data"), folder: testFolder(), reason: ReasonNoTarget},
		{name: "unknown volume", pod: ann(syncv1.AnnotationVolume, "nope"), folder: testFolder(), reason: ReasonNoTarget},
		{name: "configMap volume", pod: ann(syncv1.AnnotationVolume, "conf"), folder: testFolder(), reason: ReasonNoTarget},
		{name: "mount path nobody mounts", pod: ann(syncv1.AnnotationVolume, "", syncv1.AnnotationMountPath, "/srv"), folder: testFolder(), reason: ReasonNoTarget},
		{name: "relative mount path", pod: ann(syncv1.AnnotationVolume, "", syncv1.AnnotationMountPath, "data"), folder: testFolder(), reason: ReasonNoTarget},
		{name: "bad mode", pod: ann(syncv1.AnnotationMode, "sideways"), folder: testFolder(), reason: ReasonInvalidMode},
		{name: "sub-path escapes", pod: ann(syncv1.AnnotationSubPath, "a/../../etc"), folder: testFolder(), reason: ReasonInvalidSubPath},
		{name: "absolute sub-path", pod: ann(syncv1.AnnotationSubPath, "/etc"), folder: testFolder(), reason: ReasonInvalidSubPath},
		{name: "pod runs as root", pod: func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr.To(int64(0))}
		}, folder: testFolder(), reason: ReasonRunsAsRoot},
		{name: "reserved volume name", pod: func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "syncagent-state"})
		}, folder: testFolder(), reason: ReasonNameTaken},
		{name: "volume", folder: testFolder(), inject: true, volume: "data", mode: syncv1.AgentTwoWay},
		{name: "volume with sub-path", pod: ann(syncv1.AnnotationSubPath, "./a/b/"), folder: testFolder(), inject: true, volume: "data", subPath: "a/b", mode: syncv1.AgentTwoWay},
		{name: "mount path exact", pod: ann(syncv1.AnnotationVolume, "", syncv1.AnnotationMountPath, "/data/"), folder: testFolder(), inject: true, volume: "data", mode: syncv1.AgentTwoWay},
		{name: "mount path below a mount", pod: ann(syncv1.AnnotationVolume, "", syncv1.AnnotationMountPath, "/data/uploads", syncv1.AnnotationSubPath, "x"), folder: testFolder(), inject: true, volume: "data", subPath: "uploads/x", mode: syncv1.AgentTwoWay},
		{name: "mount path of a sub-path mount", pod: func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts[0].SubPath = "site"
			ann(syncv1.AnnotationVolume, "", syncv1.AnnotationMountPath, "/data")(p)
		}, folder: testFolder(), inject: true, volume: "data", subPath: "site", mode: syncv1.AgentTwoWay},
		{name: "mode override, agent spelling", pod: ann(syncv1.AnnotationMode, "receive-only"), folder: testFolder(), inject: true, volume: "data", mode: syncv1.AgentReceiveOnly},
		{name: "mode from folder default", folder: func() *syncv1.SyncedFolder {
			f := testFolder()
			f.Spec.Agent.Mode = syncv1.AgentSendOnly
			return f
		}(), inject: true, volume: "data", mode: syncv1.AgentSendOnly},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := shouldInject(testPod(tc.pod), tc.folder, "synced-folder-system")
			if d.Inject != tc.inject || d.Reason != tc.reason {
				t.Fatalf("got inject=%v reason=%q (%s), want inject=%v reason=%q", d.Inject, d.Reason, d.Message, tc.inject, tc.reason)
			}
			if d.Reason != "" && d.Message == "" {
				t.Errorf("reason %s without a message", d.Reason)
			}
			if tc.inject && (d.Target.Volume != tc.volume || d.Target.SubPath != tc.subPath || d.Target.Mode != tc.mode) {
				t.Errorf("target %+v, want volume %q subPath %q mode %q", d.Target, tc.volume, tc.subPath, tc.mode)
			}
		})
	}
}

func TestContainerUserIsCarriedOver(t *testing.T) {
	pod := testPod(func(p *corev1.Pod) {
		p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr.To(int64(0))}
		p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To(int64(1000)), RunAsGroup: ptr.To(int64(2000))}
	})
	d := shouldInject(pod, testFolder(), "")
	if !d.Inject {
		t.Fatalf("not injected: %s %s", d.Reason, d.Message)
	}
	if *d.Target.RunAsUser != 1000 || *d.Target.RunAsGroup != 2000 {
		t.Fatalf("agent user %v/%v, want the app container's 1000/2000", *d.Target.RunAsUser, *d.Target.RunAsGroup)
	}
}
