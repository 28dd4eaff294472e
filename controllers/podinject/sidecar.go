package podinject

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// Paths and names inside the agent container (the contract in CONTRACTS.md "Agent in a pod").
const (
	agentDir       = "/var/lib/syncagent/folder"
	agentStateDir  = "/var/lib/syncagent/state"
	tokenDir       = "/var/run/secrets/sync.syncedfolder.io/token"
	tokenFile      = tokenDir + "/token"
	configDir      = "/etc/syncagent/config"
	caFile         = configDir + "/ca.crt"
	ignoreFile     = configDir + "/syncignore"
	agentPort      = 8477
	agentPortName  = "syncagent-http"
	tokenVolume    = AgentContainerName + "-token"
	configVolume   = AgentContainerName + "-config"
	stateVolume    = AgentContainerName + "-state"
	tokenLifetime  = 3600
	configMapCAKey = "ca.crt"
	// configMapIgnoreKey holds the folder's agent.ignorePatterns (controllers/names.go).
	configMapIgnoreKey = "syncignore"
	// ConfigMap keys written by the reconciler (controllers/names.go).
	configMapServerURLKey      = "serverURL"
	configMapRescanIntervalKey = "rescanInterval"
	configMapMassDeleteKey     = "massDeleteThreshold"
)

// startupFailures × startupPeriod is how long the first full sync may take before the kubelet
// restarts the agent: an hour, because a large folder's first download is legitimately slow
// and a restart would only begin it again.
const (
	startupPeriod   = 2
	startupFailures = 1800
)

// Config are the operator-wide settings of the injection.
type Config struct {
	// AgentImage is the agent image when the folder's spec.agent.image is empty.
	AgentImage string
	// OperatorNamespace is never injected (the operator's own pods).
	OperatorNamespace string
}

// configMapName is the folder's agent ConfigMap (controllers/names.go writes it).
func configMapName(folder string) string { return folder + "-config" }

// inject returns a copy of pod with the agent of folder added as a native sidecar syncing t.
func inject(pod *corev1.Pod, folder *syncv1.SyncedFolder, t Target, cfg Config) *corev1.Pod {
	out := pod.DeepCopy()
	image := folder.Spec.Agent.Image
	if image == "" {
		image = cfg.AgentImage
	}
	cm := corev1.LocalObjectReference{Name: configMapName(folder.Name)}
	fromConfigMap := func(name, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: cm, Key: key}}}
	}
	probe := func(path string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: path, Port: intstr.FromInt32(agentPort), Scheme: corev1.URISchemeHTTP,
			}},
			TimeoutSeconds: 2, PeriodSeconds: period, SuccessThreshold: 1, FailureThreshold: failures,
		}
	}
	agent := corev1.Container{
		Name:          AgentContainerName,
		Image:         image,
		Command:       []string{"/syncagent"},
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		Env: []corev1.EnvVar{
			fromConfigMap("SYNCAGENT_SERVER", configMapServerURLKey),
			{Name: "SYNCAGENT_DIR", Value: agentDir},
			{Name: "SYNCAGENT_STATE_DIR", Value: agentStateDir},
			{Name: "SYNCAGENT_TOKEN_FILE", Value: tokenFile},
			{Name: "SYNCAGENT_CA_FILE", Value: caFile},
			{Name: "SYNCAGENT_IGNORE_FILE", Value: ignoreFile},
			{Name: "SYNCAGENT_ID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
			{Name: "SYNCAGENT_MODE", Value: agentMode(t.Mode)},
			// Read from the ConfigMap, so a changed folder default applies when the agent
			// restarts; the mode is not (the ConfigMap spells it the API's way, the agent
			// its own), and a per-pod override must win anyway.
			fromConfigMap("SYNCAGENT_RESCAN_INTERVAL", configMapRescanIntervalKey),
			fromConfigMap("SYNCAGENT_MAX_DELETE_PERCENT", configMapMassDeleteKey),
			{Name: "SYNCAGENT_LISTEN", Value: ":" + strconv.Itoa(agentPort)},
			{Name: "SYNCAGENT_LOG_FORMAT", Value: "json"},
		},
		Ports:     []corev1.ContainerPort{{Name: agentPortName, ContainerPort: agentPort, Protocol: corev1.ProtocolTCP}},
		Resources: *folder.Spec.Agent.Resources.DeepCopy(),
		VolumeMounts: []corev1.VolumeMount{
			{Name: t.Volume, MountPath: agentDir, SubPath: t.SubPath},
			{Name: stateVolume, MountPath: agentStateDir},
			{Name: tokenVolume, MountPath: tokenDir, ReadOnly: true},
			{Name: configVolume, MountPath: configDir, ReadOnly: true},
		},
		// The app containers start only once the startup probe passes, which /readyz does
		// after the first full sync: the app never sees a half-synced folder.
		StartupProbe:             probe("/readyz", startupPeriod, startupFailures),
		LivenessProbe:            probe("/healthz", 20, 3),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext: &corev1.SecurityContext{
			// The user is the app's (pod-level settings are inherited; a container-level
			// override on the app container is copied), so the files the agent writes
			// belong to the app; fsGroup and supplementalGroups apply pod-wide anyway.
			RunAsUser:                t.RunAsUser,
			RunAsGroup:               t.RunAsGroup,
			RunAsNonRoot:             ptr.To(true),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Privileged:               ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	if out.Spec.ServiceAccountName == "" {
		// The projected token needs a named service account. The API server's ServiceAccount
		// admission names "default" anyway; saying so here keeps the pod valid where that
		// plugin is off.
		out.Spec.ServiceAccountName = "default"
	}
	// First in initContainers: later init containers (and the app) run on a synced folder.
	out.Spec.InitContainers = append([]corev1.Container{agent}, out.Spec.InitContainers...)
	out.Spec.Volumes = append(out.Spec.Volumes,
		// The state lives in an emptyDir, not in the synced directory: the volume may be
		// shared by several pods (one state per agent, never one for all), mounted
		// read-only by the app, and the app should not see agent files. The price is a
		// first pass without a sync base after the pod is replaced, which the server's
		// history resolves (conflict copies, never loss).
		corev1.Volume{Name: stateVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		// No defaultMode: the kubelet gives a token file to the pod's user or fsGroup
		// itself, and a mode set here would take that away from a non-root agent.
		corev1.Volume{Name: tokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				// Only the folder's server accepts this audience; the kubelet rotates the
				// token at 80% of its lifetime and the agent rereads the file per request.
				Audience:          syncv1.TokenAudience(pod.Namespace, folder.Name),
				ExpirationSeconds: ptr.To(int64(tokenLifetime)),
				Path:              "token",
			}}},
		}}},
		corev1.Volume{Name: configVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: cm,
			Items: []corev1.KeyToPath{
				{Key: configMapCAKey, Path: "ca.crt"},
				{Key: configMapIgnoreKey, Path: "syncignore"},
			},
			DefaultMode: ptr.To(int32(0o444)),
		}}},
	)
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels[syncv1.LabelAgentFor] = folder.Name
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[syncv1.AnnotationInjected] = folder.Name
	delete(out.Annotations, syncv1.AnnotationInjectionStatus)
	return out
}

// refused returns a copy of pod that carries why it got no agent.
func refused(pod *corev1.Pod, d Decision) *corev1.Pod {
	out := pod.DeepCopy()
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[syncv1.AnnotationInjectionStatus] = d.Reason + ": " + d.Message
	return out
}
