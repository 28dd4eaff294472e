package v1alpha1

// Pod annotations by which a pod opts into the sync agent sidecar (issue 6, the injection
// webhook). They live here so that the webhook, the reconciler's safety net and users' manifests
// share one spelling.
const (
	// AnnotationFolder names the SyncedFolder (in the pod's namespace) the pod joins; its
	// presence is the opt-in.
	AnnotationFolder = "sync.syncedfolder.io/folder"
	// AnnotationVolume names the pod volume whose directory is synced.
	AnnotationVolume = "sync.syncedfolder.io/volume"
	// AnnotationMountPath names a path an app container mounts, as an alternative to
	// AnnotationVolume.
	AnnotationMountPath = "sync.syncedfolder.io/mount-path"
	// AnnotationMode overrides the folder's default agent mode for this pod.
	AnnotationMode = "sync.syncedfolder.io/mode"
	// AnnotationSubPath restricts syncing to a sub-directory of the volume.
	AnnotationSubPath = "sync.syncedfolder.io/sub-path"
	// AnnotationInjected is set by the webhook on a pod it mutated, so a second pass is a
	// no-op; its value is the folder name.
	AnnotationInjected = "sync.syncedfolder.io/injected"
	// AnnotationInjectionStatus says why an opted-in pod was admitted without an agent.
	AnnotationInjectionStatus = "sync.syncedfolder.io/injection-status"
	// AnnotationConfigHash on the server's pod template changes whenever the server's
	// configuration, credentials or certificates change, which rolls the StatefulSet.
	AnnotationConfigHash = "sync.syncedfolder.io/config-hash"
)

// Labels the operator puts on the objects it manages.
const (
	// LabelName is the standard app name label; the server's pods carry "syncserver".
	LabelName = "app.kubernetes.io/name"
	// LabelInstance is the standard instance label; its value is the SyncedFolder's name.
	LabelInstance = "app.kubernetes.io/instance"
	// LabelComponent is the standard component label ("server").
	LabelComponent = "app.kubernetes.io/component"
	// LabelManagedBy is the standard manager label; its value is ManagedByValue.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy on every object the operator creates.
	ManagedByValue = "synced-folder-operator"
	// LabelAgentFor marks a pod that runs an agent of the named folder; the webhook sets it
	// and the server's NetworkPolicy admits traffic from pods carrying it.
	LabelAgentFor = "sync.syncedfolder.io/agent-for"
)

// FinalizerDatabase guards a PostgreSQL role and database the operator provisioned, so they
// can be dropped (deletionPolicy: Delete) before the SyncedFolder goes away.
const FinalizerDatabase = "sync.syncedfolder.io/database"

// FinalizerTokenReviewBinding guards the cluster-scoped ClusterRoleBinding that lets the
// folder's server create TokenReviews: a cluster-scoped object cannot be owned by a
// namespaced SyncedFolder, so it is deleted by the finalizer instead of the garbage collector.
const FinalizerTokenReviewBinding = "sync.syncedfolder.io/tokenreview-binding"

// LabelFolderNamespace, with LabelInstance, names the SyncedFolder that a cluster-scoped
// object (the server's ClusterRoleBinding) belongs to.
const LabelFolderNamespace = "sync.syncedfolder.io/folder-namespace"

// Condition types of SyncedFolder.status.conditions.
const (
	// ConditionReady is True when the server runs and its database is usable.
	ConditionReady = "Ready"
	// ConditionServerReady is True when the server's StatefulSet has a ready, up-to-date pod.
	ConditionServerReady = "ServerReady"
	// ConditionDatabaseReady is True when the server's database is usable.
	ConditionDatabaseReady = "DatabaseReady"
	// ConditionMonitoringReady is True when the ServiceMonitor exists.
	ConditionMonitoringReady = "MonitoringReady"
)

// Condition reasons (CamelCase, as metav1.Condition requires).
const (
	ReasonReconciled              = "Reconciled"
	ReasonReconcileFailed         = "ReconcileFailed"
	ReasonServerRunning           = "ServerRunning"
	ReasonServerNotReady          = "ServerNotReady"
	ReasonSuspended               = "Suspended"
	ReasonEmbeddedDatabase        = "EmbeddedDatabase"
	ReasonCredentialsProvided     = "CredentialsProvided"
	ReasonSecretMissing           = "SecretMissing"
	ReasonSecretInvalid           = "SecretInvalid"
	ReasonConnectionFailed        = "ConnectionFailed"
	ReasonProvisioningFailed      = "ProvisioningFailed"
	ReasonProvisioned             = "Provisioned"
	ReasonServiceMonitorReady     = "ServiceMonitorReady"
	ReasonServiceMonitorCRDAbsent = "ServiceMonitorCRDAbsent"
	ReasonMonitoringDisabled      = "MonitoringDisabled"
	ReasonNotReady                = "NotReady"
)

// ConditionStorageReady is True when the server's volume claim has the capacity that
// spec.storage.size asks for. It does not feed Ready: a volume waiting to grow still serves.
const ConditionStorageReady = "StorageReady"

// Reasons of ConditionStorageReady.
const (
	// ReasonVolumeReady: the claim's capacity is at least spec.storage.size.
	ReasonVolumeReady = "VolumeReady"
	// ReasonVolumeClaimPending: the claim does not exist or is not bound yet (status Unknown).
	ReasonVolumeClaimPending = "VolumeClaimPending"
	// ReasonVolumeExpansionNotAllowed: spec.storage.size grew but the claim's StorageClass
	// does not allow volume expansion; the claim is left as it is.
	ReasonVolumeExpansionNotAllowed = "VolumeExpansionNotAllowed"
	// ReasonVolumeResizing: the claim asks for more and the storage provider expands it.
	ReasonVolumeResizing = "VolumeResizing"
	// ReasonFileSystemResizePending: the volume grew; the kubelet has yet to grow its file
	// system, which some drivers do only when the server's pod restarts.
	ReasonFileSystemResizePending = "FileSystemResizePending"
	// ReasonVolumeResizeFailed: the storage provider or the API server refused the expansion.
	ReasonVolumeResizeFailed = "VolumeResizeFailed"
)

// TokenAudience is the audience of the projected service-account tokens that agents present
// to the server of the SyncedFolder name in namespace. The server accepts tokens for this
// audience only, so a token minted for one folder opens no other.
func TokenAudience(namespace, name string) string {
	return "sync.syncedfolder.io/" + namespace + "/" + name
}
