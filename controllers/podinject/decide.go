// Package podinject is the pod-mutating admission webhook that adds the sync agent to pods
// that opt in with the sync.syncedfolder.io/folder annotation. The decision (decide.go) and
// the mutation (sidecar.go) are pure functions of the pod and the SyncedFolder, so they are
// tested without an API server; webhook.go only reads the folder and turns the result into a
// JSON patch.
package podinject

import (
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// AgentContainerName is the name of the injected agent container; the reconciler's safety
// net looks for it to tell injected pods from the others.
const AgentContainerName = "syncagent"

// Reasons (event reasons, CamelCase) why an opted-in pod was admitted without an agent.
const (
	ReasonFolderNotFound   = "FolderNotFound"
	ReasonFolderUnreadable = "FolderUnreadable"
	ReasonNoTarget         = "NoTarget"
	ReasonInvalidMode      = "InvalidMode"
	ReasonInvalidSubPath   = "InvalidSubPath"
	ReasonRunsAsRoot       = "RunsAsRoot"
	ReasonNameTaken        = "NameTaken"
)

// Decision is what shouldInject concluded about one pod.
type Decision struct {
	// Inject is true when the agent is to be added to Target.
	Inject bool
	// Reason and Message say why an opted-in pod gets no agent. An empty Reason with Inject
	// false means the pod is none of the webhook's business (not opted in, already
	// injected, or in an excluded namespace) and is left exactly as it is.
	Reason, Message string
	// Target is the directory the agent syncs (set when Inject is true).
	Target Target
}

// Target is the resolved directory to sync: a pod volume, a path inside it, the mode, and
// the app container whose user the agent takes over.
type Target struct {
	Volume  string
	SubPath string
	Mode    syncv1.AgentMode
	// RunAsUser and RunAsGroup are set from the app container that mounts the volume when it
	// overrides the pod's user; otherwise the agent inherits the pod's securityContext.
	RunAsUser, RunAsGroup *int64
}

// skip is a Decision that leaves the pod alone and reports nothing.
var skip = Decision{}

// refuse is a Decision that admits the pod unchanged and reports why.
func refuse(reason, format string, args ...any) Decision {
	return Decision{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// shouldInject decides what happens to pod, whose namespace is set, given the SyncedFolder
// it names (nil when there is none) and the operator's namespace.
//
// Truth table, first matching row wins:
//
//	folder annotation | namespace            | already injected | folder | target         | result
//	------------------+----------------------+------------------+--------+----------------+------------------------
//	absent or empty   | any                  | any              | any    | any            | skip
//	present           | kube-system/operator | any              | any    | any            | skip
//	present           | other                | yes (annotation  | any    | any            | skip (second pass)
//	                  |                      | or container)    |        |                |
//	present           | other                | no               | nil    | any            | refuse FolderNotFound
//	present           | other                | no               | found  | none/bad       | refuse NoTarget,
//	                  |                      |                  |        |                | InvalidMode, InvalidSubPath,
//	                  |                      |                  |        |                | RunsAsRoot or NameTaken
//	present           | other                | no               | found  | usable         | inject
//
// "skip" admits the pod unchanged and silently; "refuse" admits it unchanged with the
// injection-status annotation and an event saying why.
func shouldInject(pod *corev1.Pod, folder *syncv1.SyncedFolder, operatorNamespace string) Decision {
	name := pod.Annotations[syncv1.AnnotationFolder]
	if name == "" {
		return skip
	}
	if pod.Namespace == metav1.NamespaceSystem || (operatorNamespace != "" && pod.Namespace == operatorNamespace) {
		return skip
	}
	if alreadyInjected(pod) {
		return skip
	}
	if folder == nil || folder.Name != name || !folder.DeletionTimestamp.IsZero() {
		return refuse(ReasonFolderNotFound, "SyncedFolder %q does not exist in namespace %q", name, pod.Namespace)
	}
	return resolveTarget(pod, folder)
}

// alreadyInjected reports whether the pod went through the webhook before (an update, or a
// second webhook pass after another webhook's change) or carries an agent someone wrote by
// hand: adding a second one would make two agents fight over one directory.
func alreadyInjected(pod *corev1.Pod) bool {
	if _, ok := pod.Annotations[syncv1.AnnotationInjected]; ok {
		return true
	}
	return HasAgent(pod)
}

// HasAgent reports whether the pod has the agent container (as a native sidecar or
// otherwise).
func HasAgent(pod *corev1.Pod) bool {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == AgentContainerName {
			return true
		}
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == AgentContainerName {
			return true
		}
	}
	return false
}

// resolveTarget turns the volume / mount-path / sub-path / mode annotations into a Target.
func resolveTarget(pod *corev1.Pod, folder *syncv1.SyncedFolder) Decision {
	ann := pod.Annotations
	volName, mountPath := ann[syncv1.AnnotationVolume], ann[syncv1.AnnotationMountPath]
	var t Target
	var user *corev1.Container
	switch {
	case volName != "" && mountPath != "":
		return refuse(ReasonNoTarget, "set only one of %s and %s", syncv1.AnnotationVolume, syncv1.AnnotationMountPath)
	case volName == "" && mountPath == "":
		return refuse(ReasonNoTarget, "annotation %s or %s is required to name the directory to sync", syncv1.AnnotationVolume, syncv1.AnnotationMountPath)
	case volName != "":
		t.Volume = volName
		user = containerMounting(pod, volName)
	default:
		c, m, rest, d := findMount(pod, mountPath)
		if d.Reason != "" {
			return d
		}
		user, t.Volume, t.SubPath = c, m.Name, joinSub(m.SubPath, rest)
	}
	vol := findVolume(pod, t.Volume)
	if vol == nil {
		return refuse(ReasonNoTarget, "the pod has no volume %q", t.Volume)
	}
	if kind := kubeletManaged(vol); kind != "" {
		return refuse(ReasonNoTarget, "volume %q is a %s volume, which the kubelet keeps read-only", t.Volume, kind)
	}
	sub, err := cleanSubPath(ann[syncv1.AnnotationSubPath])
	if err != nil {
		return refuse(ReasonInvalidSubPath, "annotation %s: %v", syncv1.AnnotationSubPath, err)
	}
	t.SubPath = joinSub(t.SubPath, sub)
	mode, err := parseMode(ann[syncv1.AnnotationMode], folder.Spec.Agent.Mode)
	if err != nil {
		return refuse(ReasonInvalidMode, "annotation %s: %v", syncv1.AnnotationMode, err)
	}
	t.Mode = mode
	if user != nil && user.SecurityContext != nil {
		t.RunAsUser, t.RunAsGroup = user.SecurityContext.RunAsUser, user.SecurityContext.RunAsGroup
	}
	uid := t.RunAsUser
	if uid == nil && pod.Spec.SecurityContext != nil {
		uid = pod.Spec.SecurityContext.RunAsUser
	}
	if uid != nil && *uid == 0 {
		// The agent is always non-root; as another user it could not write the root-owned
		// files of the app, so it would fail on every file instead of syncing.
		return refuse(ReasonRunsAsRoot, "the app runs as root (runAsUser 0) and the agent never does; run the app as a non-root user")
	}
	for _, v := range pod.Spec.Volumes {
		if strings.HasPrefix(v.Name, AgentContainerName+"-") {
			return refuse(ReasonNameTaken, "volume name %q is reserved for the agent", v.Name)
		}
	}
	return Decision{Inject: true, Target: t}
}

// findMount finds the app container mount that holds dir: the mount at dir itself or the
// deepest mount above it, and the rest of dir below that mount.
func findMount(pod *corev1.Pod, dir string) (*corev1.Container, corev1.VolumeMount, string, Decision) {
	if !path.IsAbs(dir) {
		return nil, corev1.VolumeMount{}, "", refuse(ReasonNoTarget, "annotation %s %q is not an absolute path", syncv1.AnnotationMountPath, dir)
	}
	dir = path.Clean(dir)
	var (
		best      *corev1.Container
		bestMount corev1.VolumeMount
		rest      string
	)
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		for _, m := range c.VolumeMounts {
			mp := path.Clean(m.MountPath)
			r, ok := below(dir, mp)
			if !ok || (best != nil && len(mp) <= len(path.Clean(bestMount.MountPath))) {
				continue
			}
			best, bestMount, rest = c, m, r
		}
	}
	switch {
	case best == nil:
		return nil, corev1.VolumeMount{}, "", refuse(ReasonNoTarget, "no app container mounts a volume at or above %q", dir)
	case bestMount.SubPathExpr != "":
		return nil, corev1.VolumeMount{}, "", refuse(ReasonNoTarget, "the mount at %q uses subPathExpr, which the webhook cannot resolve; use %s", bestMount.MountPath, syncv1.AnnotationVolume)
	}
	return best, bestMount, rest, Decision{}
}

// below reports whether dir is mount or inside it, and the relative rest.
func below(dir, mount string) (string, bool) {
	if dir == mount {
		return "", true
	}
	if mount == "/" {
		return strings.TrimPrefix(dir, "/"), true
	}
	if strings.HasPrefix(dir, mount+"/") {
		return dir[len(mount)+1:], true
	}
	return "", false
}

// containerMounting is the first app container that mounts the volume, whose user the agent
// takes over.
func containerMounting(pod *corev1.Pod, volume string) *corev1.Container {
	for i := range pod.Spec.Containers {
		for _, m := range pod.Spec.Containers[i].VolumeMounts {
			if m.Name == volume {
				return &pod.Spec.Containers[i]
			}
		}
	}
	return nil
}

func findVolume(pod *corev1.Pod, name string) *corev1.Volume {
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == name {
			return &pod.Spec.Volumes[i]
		}
	}
	return nil
}

// kubeletManaged names the volume kinds whose content the kubelet writes and mounts
// read-only: nothing could be synced into them.
func kubeletManaged(v *corev1.Volume) string {
	switch {
	case v.ConfigMap != nil:
		return "configMap"
	case v.Secret != nil:
		return "secret"
	case v.DownwardAPI != nil:
		return "downwardAPI"
	case v.Projected != nil:
		return "projected"
	}
	return ""
}

// cleanSubPath validates a sub-path annotation: relative, without "..", cleaned.
func cleanSubPath(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	if path.IsAbs(p) || strings.Contains(p, `\`) {
		return "", fmt.Errorf("%q must be a relative path", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "", fmt.Errorf("%q must not contain \"..\"", p)
		}
	}
	return joinSub(p), nil
}

// joinSub joins sub-path parts; the volume's root is "", not ".".
func joinSub(parts ...string) string {
	if p := path.Join(parts...); p != "." {
		return p
	}
	return ""
}

// parseMode reads a mode annotation (the API's TwoWay/SendOnly/ReceiveOnly or the agent's
// two-way/send-only/receive-only); empty takes the folder's default.
func parseMode(s string, def syncv1.AgentMode) (syncv1.AgentMode, error) {
	if s == "" {
		if def == "" {
			return syncv1.AgentTwoWay, nil
		}
		return def, nil
	}
	for _, m := range []syncv1.AgentMode{syncv1.AgentTwoWay, syncv1.AgentSendOnly, syncv1.AgentReceiveOnly} {
		if s == string(m) || s == agentMode(m) {
			return m, nil
		}
	}
	return "", fmt.Errorf("mode %q: want TwoWay, SendOnly or ReceiveOnly", s)
}

// agentMode is the agent's spelling of a mode (its --mode flag).
func agentMode(m syncv1.AgentMode) string {
	switch m {
	case syncv1.AgentSendOnly:
		return "send-only"
	case syncv1.AgentReceiveOnly:
		return "receive-only"
	default:
		return "two-way"
	}
}
