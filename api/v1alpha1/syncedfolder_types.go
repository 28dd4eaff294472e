package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SyncedFolderSpec is the desired state of a SyncedFolder: one sync server with its storage
// and database, and the defaults its injected agents use.
type SyncedFolderSpec struct {
	// storage is the persistent volume that holds the folder's content blocks (and the
	// embedded database).
	// +required
	Storage StorageSpec `json:"storage"`

	// database selects where the server keeps metadata and the audit log: the embedded
	// database on the volume (default) or PostgreSQL.
	// +optional
	// +kubebuilder:default={type: Embedded}
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="database is immutable: the blocks on the server's volume belong to the metadata of this database, which another one would not know (its clean-up would delete them); create another SyncedFolder to use another database"
	Database DatabaseSpec `json:"database,omitempty"`

	// server tunes the sync server's pod.
	// +optional
	Server ServerSpec `json:"server,omitempty"`

	// agent holds the defaults of the agents injected into pods that join this folder.
	// +optional
	// +kubebuilder:default={}
	Agent AgentSpec `json:"agent,omitempty"`

	// versioning is the retention policy of previous file versions.
	// +optional
	// +kubebuilder:default={}
	Versioning VersioningSpec `json:"versioning,omitempty"`

	// conflictPolicy decides which side keeps the path when both changed it differently;
	// the other side is kept as a conflict copy, so nothing is lost either way.
	// +optional
	// +kubebuilder:default=RemoteWins
	ConflictPolicy ConflictPolicy `json:"conflictPolicy,omitempty"`

	// massDeleteThreshold is the share of the tree, in percent, that one plan may delete
	// before an agent pauses and reports it instead.
	// +optional
	// +kubebuilder:default=50
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	MassDeleteThreshold int32 `json:"massDeleteThreshold,omitempty"`

	// access lists who may sync. Empty means every service account of the namespace.
	// +optional
	Access AccessSpec `json:"access,omitempty"`

	// monitoring configures the Prometheus ServiceMonitor of the server.
	// +optional
	// +kubebuilder:default={enabled: true}
	Monitoring MonitoringSpec `json:"monitoring,omitempty"`

	// suspend scales the server to zero while true; storage and database are kept.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// StorageSpec is the server's persistent volume.
// +kubebuilder:validation:XValidation:rule="has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)",message="storage.storageClassName is immutable: the server's volume cannot move to another StorageClass"
type StorageSpec struct {
	// size is the requested capacity of the volume, such as 10Gi. It may grow later: the
	// operator then expands the server's volume claim when its StorageClass allows volume
	// expansion (the StorageReady condition tells how far that got). It may not shrink, since
	// no volume can.
	// +required
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('0'))",message="storage.size must be a positive quantity such as 10Gi"
	// +kubebuilder:validation:XValidation:rule="!quantity(string(self)).isLessThan(quantity(string(oldSelf)))",messageExpression="'storage.size cannot shrink from ' + string(oldSelf) + ' to ' + string(self) + ': a volume can only grow'",reason=FieldValueForbidden
	Size resource.Quantity `json:"size"`

	// storageClassName is the StorageClass of the volume; empty uses the cluster default. It
	// cannot change after creation (a bound volume keeps its class).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	StorageClassName *string `json:"storageClassName,omitempty"`
}

// DatabaseType says where the server keeps metadata.
// +kubebuilder:validation:Enum=Embedded;PostgreSQL
type DatabaseType string

// Database types.
const (
	// DatabaseEmbedded keeps metadata in an embedded database on the server's volume.
	DatabaseEmbedded DatabaseType = "Embedded"
	// DatabasePostgreSQL keeps metadata in a PostgreSQL database.
	DatabasePostgreSQL DatabaseType = "PostgreSQL"
)

// DatabaseSpec selects the server's metadata database.
// +kubebuilder:validation:XValidation:rule="self.type == 'PostgreSQL' ? has(self.postgres) : !has(self.postgres)",message="database.postgres is required when database.type is PostgreSQL and forbidden otherwise"
type DatabaseSpec struct {
	// type is Embedded (default) or PostgreSQL.
	// +optional
	// +kubebuilder:default=Embedded
	Type DatabaseType `json:"type,omitempty"`

	// postgres configures PostgreSQL; required when type is PostgreSQL.
	// +optional
	Postgres *PostgresSpec `json:"postgres,omitempty"`
}

// DeletionPolicy says what happens to a provisioned role and database when the SyncedFolder
// is deleted.
// +kubebuilder:validation:Enum=Retain;Delete
type DeletionPolicy string

// Deletion policies.
const (
	// DeletionRetain keeps the provisioned role and database.
	DeletionRetain DeletionPolicy = "Retain"
	// DeletionDelete drops the provisioned role and database.
	DeletionDelete DeletionPolicy = "Delete"
)

// PostgresSpec points the server at PostgreSQL, either with ready credentials or with admin
// credentials from which the operator provisions a role and a database for this folder.
// +kubebuilder:validation:XValidation:rule="has(self.credentialsSecretRef) != has(self.adminSecretRef)",message="exactly one of postgres.credentialsSecretRef and postgres.adminSecretRef must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.adminSecretRef) || (has(self.host) && size(self.host) > 0)",message="postgres.host is required with postgres.adminSecretRef"
type PostgresSpec struct {
	// credentialsSecretRef names a key of a Secret in the folder's namespace holding a
	// complete PostgreSQL URL (postgres://user:password@host:port/db?sslmode=...). It is used
	// as it is.
	// +optional
	CredentialsSecretRef *SecretKeyRef `json:"credentialsSecretRef,omitempty"`

	// adminSecretRef names a Secret in the folder's namespace with keys `username` and
	// `password` of a role allowed to create roles and databases. The operator provisions a
	// role and a database for the folder and writes their credentials to a Secret it owns.
	// +optional
	AdminSecretRef *corev1.LocalObjectReference `json:"adminSecretRef,omitempty"`

	// host is the PostgreSQL server's host name (with adminSecretRef).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Host string `json:"host,omitempty"`

	// port is the PostgreSQL server's port.
	// +optional
	// +kubebuilder:default=5432
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`

	// sslMode is libpq's sslmode for the admin and the provisioned connections.
	// +optional
	// +kubebuilder:default=require
	// +kubebuilder:validation:Enum=disable;allow;prefer;require;verify-ca;verify-full
	SSLMode string `json:"sslMode,omitempty"`

	// adminDatabase is the database the admin connection opens.
	// +optional
	// +kubebuilder:default=postgres
	// +kubebuilder:validation:MaxLength=63
	AdminDatabase string `json:"adminDatabase,omitempty"`

	// deletionPolicy says whether a provisioned role and database are dropped (Delete) or
	// kept (Retain) when the SyncedFolder is deleted.
	// +optional
	// +kubebuilder:default=Retain
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// SecretKeyRef names one key of a Secret in the same namespace.
type SecretKeyRef struct {
	// name is the Secret's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// key is the key within the Secret.
	// +optional
	// +kubebuilder:default=url
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// ServerSpec tunes the sync server's pod.
type ServerSpec struct {
	// image overrides the server image the operator was started with.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`

	// imagePullPolicy of the server container.
	// +optional
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// resources of the server container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// podLabels are extra labels of the server's pod.
	// +optional
	PodLabels map[string]string `json:"podLabels,omitempty"`

	// podAnnotations are extra annotations of the server's pod.
	// +optional
	PodAnnotations map[string]string `json:"podAnnotations,omitempty"`
}

// AgentMode is the sync direction of an agent.
// +kubebuilder:validation:Enum=TwoWay;SendOnly;ReceiveOnly
type AgentMode string

// Agent modes.
const (
	// AgentTwoWay syncs both ways.
	AgentTwoWay AgentMode = "TwoWay"
	// AgentSendOnly only uploads local changes.
	AgentSendOnly AgentMode = "SendOnly"
	// AgentReceiveOnly only applies the server's changes.
	AgentReceiveOnly AgentMode = "ReceiveOnly"
)

// AgentSpec holds the defaults of injected agents.
type AgentSpec struct {
	// image overrides the agent image the operator was started with.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`

	// mode is the default sync direction (a pod annotation may override it).
	// +optional
	// +kubebuilder:default=TwoWay
	Mode AgentMode `json:"mode,omitempty"`

	// ignorePatterns are gitignore-style patterns never synced, added to each directory's
	// .syncignore.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=1024
	IgnorePatterns []string `json:"ignorePatterns,omitempty"`

	// rescanInterval is the period of the full rescan that backs up the file watcher.
	// +optional
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="agent.rescanInterval must be at least 1s"
	RescanInterval *metav1.Duration `json:"rescanInterval,omitempty"`

	// resources of the agent container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
}

// VersioningSpec is the retention policy of previous versions.
type VersioningSpec struct {
	// keepVersions is how many previous versions of a file are kept (0 keeps none).
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	KeepVersions *int32 `json:"keepVersions,omitempty"`

	// maxAge drops previous versions older than this (0s keeps them regardless of age).
	// +optional
	// +kubebuilder:default="720h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	MaxAge *metav1.Duration `json:"maxAge,omitempty"`
}

// ConflictPolicy decides which version keeps a path that both sides changed.
// +kubebuilder:validation:Enum=RemoteWins;LocalWins
type ConflictPolicy string

// Conflict policies.
const (
	// ConflictRemoteWins gives the path to the server's version; the local one becomes a
	// conflict copy.
	ConflictRemoteWins ConflictPolicy = "RemoteWins"
	// ConflictLocalWins gives the path to the local version; the server's one becomes a
	// conflict copy.
	ConflictLocalWins ConflictPolicy = "LocalWins"
)

// AccessSpec lists who may sync with the folder's server.
type AccessSpec struct {
	// serviceAccounts names the service accounts of the folder's namespace whose pods may
	// sync. Empty allows every service account of the namespace.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +kubebuilder:validation:items:MaxLength=253
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
}

// MonitoringSpec configures Prometheus scraping of the server.
type MonitoringSpec struct {
	// enabled creates a ServiceMonitor when the monitoring.coreos.com/v1 API is served.
	// +optional
	// +kubebuilder:default=true
	Enabled *bool `json:"enabled,omitempty"`

	// interval is the scrape interval, in Prometheus duration syntax.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Pattern=`^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$`
	Interval string `json:"interval,omitempty"`

	// labels are added to the ServiceMonitor, so a Prometheus' serviceMonitorSelector finds
	// it.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// scrapeFrom are the peers the server's NetworkPolicy lets scrape /metrics. Empty admits
	// pods labelled app.kubernetes.io/name=prometheus in any namespace.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	ScrapeFrom []networkingv1.NetworkPolicyPeer `json:"scrapeFrom,omitempty"`
}

// SyncedFolderStatus is the observed state of a SyncedFolder.
type SyncedFolderStatus struct {
	// observedGeneration is the .metadata.generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions are Ready, ServerReady, DatabaseReady, MonitoringReady and StorageReady.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// endpoint is the server's in-cluster URL.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// configMapName names the ConfigMap that agents mount: the server's CA (ca.crt) and the
	// agent defaults.
	// +optional
	ConfigMapName string `json:"configMapName,omitempty"`

	// database describes the provisioned PostgreSQL role and database, if any.
	// +optional
	Database *DatabaseStatus `json:"database,omitempty"`

	// stats are live figures read from the server.
	// +optional
	Stats *FolderStats `json:"stats,omitempty"`

	// uninjectedPodCount is how many pods of the namespace opt into this folder (annotation
	// sync.syncedfolder.io/folder) but were admitted without the agent: the webhook was
	// down or ignored, or refused them (their sync.syncedfolder.io/injection-status
	// annotation says why). Such pods do not sync until they are recreated.
	// +optional
	UninjectedPodCount int32 `json:"uninjectedPodCount,omitempty"`

	// uninjectedPods names the first of those pods (sorted, at most 20).
	// +optional
	// +kubebuilder:validation:MaxItems=20
	UninjectedPods []string `json:"uninjectedPods,omitempty"`
}

// DatabaseStatus describes the PostgreSQL role and database provisioned for the folder.
type DatabaseStatus struct {
	// role is the provisioned role's name.
	Role string `json:"role,omitempty"`
	// name is the provisioned database's name.
	Name string `json:"name,omitempty"`
	// secretName names the Secret holding the provisioned credentials.
	SecretName string `json:"secretName,omitempty"`
}

// FolderStats are live figures of the folder, read from its server.
type FolderStats struct {
	// files is the number of live files.
	Files int64 `json:"files"`
	// bytes is the total size of the live files.
	Bytes int64 `json:"bytes"`
	// size is bytes in human form, for kubectl.
	Size string `json:"size,omitempty"`
	// agentsConnected is the number of agents listening on the changes feed.
	AgentsConnected int64 `json:"agentsConnected"`
	// conflicts is the number of live conflict copies.
	Conflicts int64 `json:"conflicts"`
	// lastChange is when the folder last changed.
	// +optional
	LastChange *metav1.Time `json:"lastChange,omitempty"`
	// updatedAt is when these figures were read.
	UpdatedAt metav1.Time `json:"updatedAt"`
}

// SyncedFolder is a folder kept in sync between pods by a sync server the operator runs.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sf;sfolder,categories=syncedfolder
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Files",type=integer,JSONPath=`.status.stats.files`
// +kubebuilder:printcolumn:name="Size",type=string,JSONPath=`.status.stats.size`
// +kubebuilder:printcolumn:name="Agents",type=integer,JSONPath=`.status.stats.agentsConnected`
// +kubebuilder:printcolumn:name="Conflicts",type=integer,JSONPath=`.status.stats.conflicts`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 45 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS label of at most 45 characters starting with a letter (it names the server's Service and StatefulSet)"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SyncedFolder struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state.
	// +required
	Spec SyncedFolderSpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status SyncedFolderStatus `json:"status,omitempty"`
}

// SyncedFolderList is a list of SyncedFolders.
// +kubebuilder:object:root=true
type SyncedFolderList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SyncedFolder `json:"items"`
}

// MonitoringEnabled reports whether a ServiceMonitor is wanted (the default).
func (s *MonitoringSpec) MonitoringEnabled() bool { return s.Enabled == nil || *s.Enabled }
