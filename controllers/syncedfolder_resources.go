package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// Settings are the operator-wide settings the builders need besides the SyncedFolder.
type Settings struct {
	// ServerImage and AgentImage are the default images (spec overrides win).
	ServerImage string
	AgentImage  string
	// ClusterDomain is the cluster's DNS suffix (cluster.local).
	ClusterDomain string
	// OperatorNamespace is where the manager runs; its pods may reach servers to read stats.
	OperatorNamespace string
	// OperatorPodLabels select the manager's pods in OperatorNamespace.
	OperatorPodLabels map[string]string
}

// Defaults applied when the API server has not defaulted a field (objects built in unit
// tests, or created before a default was added).
const (
	defaultKeepVersions   = 10
	defaultMaxAge         = 720 * time.Hour
	defaultRescanInterval = 5 * time.Minute
	defaultScrapeInterval = "30s"
)

// serverEnv is the server's configuration, as SYNCSERVER_* variables (cmd/syncserver reads
// every flag from them too).
func serverEnv(f *syncv1.SyncedFolder) []corev1.EnvVar {
	keep := int32(defaultKeepVersions)
	if f.Spec.Versioning.KeepVersions != nil {
		keep = *f.Spec.Versioning.KeepVersions
	}
	age := defaultMaxAge
	if f.Spec.Versioning.MaxAge != nil {
		age = f.Spec.Versioning.MaxAge.Duration
	}
	env := []corev1.EnvVar{
		{Name: "SYNCSERVER_LISTEN", Value: ":" + strconv.Itoa(serverPort)},
		{Name: "SYNCSERVER_DATA_DIR", Value: dataDir},
		{Name: "SYNCSERVER_TOKEN_FILE", Value: credentialsDir + "/" + keyTokens},
		{Name: "SYNCSERVER_TLS_CERT_FILE", Value: tlsDir + "/" + keyTLSCert},
		{Name: "SYNCSERVER_TLS_KEY_FILE", Value: tlsDir + "/" + keyTLSKey},
		{Name: "SYNCSERVER_KEEP_VERSIONS", Value: strconv.Itoa(int(keep))},
		{Name: "SYNCSERVER_KEEP_VERSIONS_AGE", Value: age.String()},
	}
	if ref := databaseURLRef(f); ref != nil {
		env = append(env, corev1.EnvVar{Name: "SYNCSERVER_DATABASE_URL", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: ref}})
	}
	// Agents in pods present projected service-account tokens for the folder's audience;
	// the server verifies them with TokenReviews (its ClusterRoleBinding allows that).
	env = append(env,
		corev1.EnvVar{Name: "SYNCSERVER_TOKENREVIEW_AUDIENCE", Value: syncv1.TokenAudience(f.Namespace, f.Name)},
		corev1.EnvVar{Name: "SYNCSERVER_TOKENREVIEW_NAMESPACE", Value: f.Namespace},
	)
	if allowed := allowedServiceAccounts(f); allowed != "" {
		env = append(env, corev1.EnvVar{Name: "SYNCSERVER_ALLOWED_SERVICE_ACCOUNTS", Value: allowed})
	}
	return env
}

// allowedServiceAccounts is spec.access.serviceAccounts as the server's allow list
// ("ns/name,..."), sorted so that reordering the spec does not roll the server; empty
// lets the server allow every service account of the namespace.
func allowedServiceAccounts(f *syncv1.SyncedFolder) string {
	names := slices.Sorted(slices.Values(f.Spec.Access.ServiceAccounts))
	names = slices.Compact(names)
	for i, n := range names {
		names[i] = f.Namespace + "/" + n
	}
	return strings.Join(names, ",")
}

// databaseURLRef names the Secret key holding the server's PostgreSQL URL, nil for the
// embedded database.
func databaseURLRef(f *syncv1.SyncedFolder) *corev1.SecretKeySelector {
	pg := f.Spec.Database.Postgres
	if f.Spec.Database.Type != syncv1.DatabasePostgreSQL || pg == nil {
		return nil
	}
	if pg.CredentialsSecretRef != nil {
		key := pg.CredentialsSecretRef.Key
		if key == "" {
			key = keyDBURL
		}
		return &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: pg.CredentialsSecretRef.Name}, Key: key}
	}
	return &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: databaseSecretName(f)}, Key: keyDBURL}
}

// configHash digests everything the server reads at start but that is not in its pod
// template — Secret contents — so that changing any of it rolls the StatefulSet.
func configHash(secrets ...map[string][]byte) string {
	h := sha256.New()
	for _, data := range secrets {
		for _, k := range slices.Sorted(maps.Keys(data)) {
			h.Write([]byte(k))
			h.Write([]byte{0})
			h.Write(data[k])
			h.Write([]byte{0})
		}
		h.Write([]byte{1})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// buildServiceAccount is the server's ServiceAccount. Its token is not mounted into other
// pods that might use it; the server's pod asks for it explicitly (it calls the TokenReview
// API).
func buildServiceAccount(f *syncv1.SyncedFolder) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		ObjectMeta:                   metav1.ObjectMeta{Name: serverServiceAccountName(f), Namespace: f.Namespace, Labels: commonLabels(f)},
		AutomountServiceAccountToken: ptr.To(false),
	}
}

// buildConfigMap is what injected agents mount: the server's CA and URL and the folder's
// agent defaults.
func buildConfigMap(f *syncv1.SyncedFolder, caPEM []byte) *corev1.ConfigMap {
	a := f.Spec.Agent
	mode := a.Mode
	if mode == "" {
		mode = syncv1.AgentTwoWay
	}
	rescan := defaultRescanInterval
	if a.RescanInterval != nil {
		rescan = a.RescanInterval.Duration
	}
	policy := f.Spec.ConflictPolicy
	if policy == "" {
		policy = syncv1.ConflictRemoteWins
	}
	threshold := f.Spec.MassDeleteThreshold
	if threshold == 0 {
		threshold = 50
	}
	ignore := ""
	if len(a.IgnorePatterns) > 0 {
		ignore = strings.Join(a.IgnorePatterns, "\n") + "\n"
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: configMapName(f), Namespace: f.Namespace, Labels: commonLabels(f)},
		Data: map[string]string{
			keyCACert:              string(caPEM),
			keyServerURL:           serverURL(f),
			keyMode:                string(mode),
			keyIgnorePatterns:      ignore,
			keyRescanInterval:      rescan.String(),
			keyConflictPolicy:      string(policy),
			keyMassDeleteThreshold: strconv.Itoa(int(threshold)),
		},
	}
}

// servicePorts is the one port of both Services, with every field the API server would
// otherwise default, so that an unchanged spec never causes an update.
func servicePorts() []corev1.ServicePort {
	return []corev1.ServicePort{{
		Name:        serverPortName,
		Port:        serverPort,
		TargetPort:  intstr.FromString(serverPortName),
		Protocol:    corev1.ProtocolTCP,
		AppProtocol: ptr.To("https"),
	}}
}

// buildHeadlessService gives the StatefulSet pod its stable DNS name.
func buildHeadlessService(f *syncv1.SyncedFolder) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: headlessServiceName(f), Namespace: f.Namespace, Labels: commonLabels(f)},
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			Selector:                 selectorLabels(f),
			Ports:                    servicePorts(),
			PublishNotReadyAddresses: true,
		},
	}
}

// labelServiceRole tells the client Service from the headless one, so the ServiceMonitor
// selects one of them and each pod is scraped once.
const labelServiceRole = "sync.syncedfolder.io/service"

// clientServiceLabels label the client Service.
func clientServiceLabels(f *syncv1.SyncedFolder) map[string]string {
	l := commonLabels(f)
	l[labelServiceRole] = "client"
	return l
}

// buildClientService is the address agents, the operator and Prometheus use.
func buildClientService(f *syncv1.SyncedFolder) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: clientServiceName(f), Namespace: f.Namespace, Labels: clientServiceLabels(f)},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: selectorLabels(f),
			Ports:    servicePorts(),
		},
	}
}

// buildStatefulSet is the server: one replica (zero when suspended) with a volume from
// spec.storage. Fields the API server defaults are set explicitly, so an unchanged spec
// compares equal and never causes an update; hash is configHash of the Secrets it reads.
func buildStatefulSet(f *syncv1.SyncedFolder, s Settings, hash string) *appsv1.StatefulSet {
	image := s.ServerImage
	if f.Spec.Server.Image != "" {
		image = f.Spec.Server.Image
	}
	pull := f.Spec.Server.ImagePullPolicy
	if pull == "" {
		pull = corev1.PullIfNotPresent
	}
	replicas := int32(1)
	if f.Spec.Suspend {
		replicas = 0
	}
	podLabels := maps.Clone(f.Spec.Server.PodLabels)
	if podLabels == nil {
		podLabels = map[string]string{}
	}
	maps.Copy(podLabels, commonLabels(f))
	podAnnotations := maps.Clone(f.Spec.Server.PodAnnotations)
	if podAnnotations == nil {
		podAnnotations = map[string]string{}
	}
	podAnnotations[syncv1.AnnotationConfigHash] = hash

	probe := func(path string, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: path, Port: intstr.FromString(serverPortName), Scheme: corev1.URISchemeHTTPS,
			}},
			TimeoutSeconds: 2, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: failures,
		}
	}
	secretVolume := func(name, secret string) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: secret, DefaultMode: ptr.To(int32(0o440)),
		}}}
	}
	container := corev1.Container{
		Name:    "syncserver",
		Image:   image,
		Command: []string{"/syncserver"},
		Env:     serverEnv(f),
		Ports: []corev1.ContainerPort{{
			Name: serverPortName, ContainerPort: serverPort, Protocol: corev1.ProtocolTCP,
		}},
		Resources: f.Spec.Server.Resources,
		VolumeMounts: []corev1.VolumeMount{
			{Name: "data", MountPath: dataDir},
			{Name: "credentials", MountPath: credentialsDir, ReadOnly: true},
			{Name: "tls", MountPath: tlsDir, ReadOnly: true},
			{Name: "tmp", MountPath: "/tmp"},
		},
		StartupProbe:             probe("/readyz", 30),
		ReadinessProbe:           probe("/readyz", 3),
		LivenessProbe:            probe("/healthz", 6),
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		ImagePullPolicy:          pull,
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr.To(true),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Privileged:               ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: statefulSetName(f), Namespace: f.Namespace, Labels: commonLabels(f)},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &replicas,
			ServiceName: headlessServiceName(f),
			Selector:    &metav1.LabelSelector{MatchLabels: selectorLabels(f)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnnotations},
				// The mounted service-account token authenticates the server's TokenReviews.
				Spec: corev1.PodSpec{
					ServiceAccountName:            serverServiceAccountName(f),
					DeprecatedServiceAccount:      serverServiceAccountName(f),
					AutomountServiceAccountToken:  ptr.To(true),
					EnableServiceLinks:            ptr.To(false),
					RestartPolicy:                 corev1.RestartPolicyAlways,
					DNSPolicy:                     corev1.DNSClusterFirst,
					SchedulerName:                 corev1.DefaultSchedulerName,
					TerminationGracePeriodSeconds: ptr.To(int64(30)),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:        ptr.To(true),
						RunAsUser:           ptr.To(int64(serverUID)),
						RunAsGroup:          ptr.To(int64(serverUID)),
						FSGroup:             ptr.To(int64(serverUID)),
						FSGroupChangePolicy: ptr.To(corev1.FSGroupChangeOnRootMismatch),
						SeccompProfile:      &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{container},
					Volumes: []corev1.Volume{
						secretVolume("credentials", credentialsSecretName(f)),
						secretVolume("tls", tlsSecretName(f)),
						{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data", Labels: selectorLabels(f)},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					StorageClassName: f.Spec.Storage.StorageClassName,
					Resources: corev1.VolumeResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceStorage: f.Spec.Storage.Size},
					},
				},
			}},
		},
	}
	return sts
}

// buildNetworkPolicy admits to the server only the folder's agents, the operator (stats) and
// the monitoring peers.
func buildNetworkPolicy(f *syncv1.SyncedFolder, s Settings) *networkingv1.NetworkPolicy {
	port := intstr.FromInt32(serverPort)
	tcp := corev1.ProtocolTCP
	peers := []networkingv1.NetworkPolicyPeer{{
		PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{syncv1.LabelAgentFor: f.Name}},
	}}
	if s.OperatorNamespace != "" && len(s.OperatorPodLabels) > 0 {
		peers = append(peers, networkingv1.NetworkPolicyPeer{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: s.OperatorNamespace}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: maps.Clone(s.OperatorPodLabels)},
		})
	}
	if f.Spec.Monitoring.MonitoringEnabled() {
		scrape := f.Spec.Monitoring.ScrapeFrom
		if len(scrape) == 0 {
			scrape = []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{syncv1.LabelName: "prometheus"}},
			}}
		}
		peers = append(peers, scrape...)
	}
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: networkPolicyName(f), Namespace: f.Namespace, Labels: commonLabels(f)},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: selectorLabels(f)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  peers,
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}},
		},
	}
}

// buildServiceMonitor scrapes the server's /metrics over TLS verified by the folder's CA.
func buildServiceMonitor(f *syncv1.SyncedFolder) *monitoringv1.ServiceMonitor {
	interval := f.Spec.Monitoring.Interval
	if interval == "" {
		interval = defaultScrapeInterval
	}
	labels := maps.Clone(f.Spec.Monitoring.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, commonLabels(f))
	ep := monitoringv1.Endpoint{
		Port:     serverPortName,
		Path:     "/metrics",
		Scheme:   ptr.To(monitoringv1.SchemeHTTPS),
		Interval: monitoringv1.Duration(interval),
	}
	ep.TLSConfig = &monitoringv1.TLSConfig{SafeTLSConfig: monitoringv1.SafeTLSConfig{
		CA: monitoringv1.SecretOrConfigMap{ConfigMap: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: configMapName(f)}, Key: keyCACert,
		}},
		ServerName: ptr.To(serverDNSNames(f, "")[0]),
	}}
	return &monitoringv1.ServiceMonitor{
		ObjectMeta: metav1.ObjectMeta{Name: serviceMonitorName(f), Namespace: f.Namespace, Labels: labels},
		Spec: monitoringv1.ServiceMonitorSpec{
			Selector:  metav1.LabelSelector{MatchLabels: clientServiceLabels(f)},
			Endpoints: []monitoringv1.Endpoint{ep},
		},
	}
}
