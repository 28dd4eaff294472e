package controllers

import (
	"fmt"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// Port and paths of the sync server inside its pod.
const (
	serverPort     = 8443
	serverPortName = "https"
	dataDir        = "/data"
	credentialsDir = "/etc/syncserver/credentials"
	tlsDir         = "/etc/syncserver/tls"
	// serverUID is the non-root user and group of the server (distroless "nonroot").
	serverUID = 65532
)

// Keys of the credentials Secret: the server's token file, and the tokens in it.
const (
	keyTokens        = "tokens"
	keyOperatorToken = "operator-token"
	keyAgentToken    = "agent-token"
)

// Keys of the ConfigMap that agents mount (issue 6).
const (
	keyServerURL           = "serverURL"
	keyMode                = "mode"
	keyIgnorePatterns      = "syncignore"
	keyRescanInterval      = "rescanInterval"
	keyConflictPolicy      = "conflictPolicy"
	keyMassDeleteThreshold = "massDeleteThreshold"
)

// Keys of the provisioned database Secret.
const (
	keyDBUsername = "username"
	keyDBPassword = "password"
	keyDBHost     = "host"
	keyDBPort     = "port"
	keyDBName     = "database"
	keyDBURL      = "url"
)

// Names of the objects a SyncedFolder owns. The API restricts folder names to DNS labels of
// at most 45 characters, so every derived name is a valid DNS label too.
func serverServiceAccountName(f *syncv1.SyncedFolder) string { return f.Name + "-server" }
func credentialsSecretName(f *syncv1.SyncedFolder) string    { return f.Name + "-credentials" }
func caSecretName(f *syncv1.SyncedFolder) string             { return f.Name + "-ca" }
func tlsSecretName(f *syncv1.SyncedFolder) string            { return f.Name + "-tls" }
func databaseSecretName(f *syncv1.SyncedFolder) string       { return f.Name + "-database" }
func configMapName(f *syncv1.SyncedFolder) string            { return f.Name + "-config" }
func headlessServiceName(f *syncv1.SyncedFolder) string      { return f.Name + "-headless" }
func clientServiceName(f *syncv1.SyncedFolder) string        { return f.Name }
func statefulSetName(f *syncv1.SyncedFolder) string          { return f.Name }
func networkPolicyName(f *syncv1.SyncedFolder) string        { return f.Name }
func serviceMonitorName(f *syncv1.SyncedFolder) string       { return f.Name }

// serverDNSNames are the names the serving certificate covers: the client Service under every
// suffix a pod may use, and the StatefulSet pod's stable name behind the headless Service.
func serverDNSNames(f *syncv1.SyncedFolder, clusterDomain string) []string {
	svc, ns := clientServiceName(f), f.Namespace
	pod := fmt.Sprintf("%s-0.%s.%s.svc", statefulSetName(f), headlessServiceName(f), ns)
	return []string{
		fmt.Sprintf("%s.%s.svc", svc, ns),
		svc,
		fmt.Sprintf("%s.%s", svc, ns),
		fmt.Sprintf("%s.%s.svc.%s", svc, ns, clusterDomain),
		pod,
		pod + "." + clusterDomain,
	}
}

// serverURL is the in-cluster URL of the folder's server.
func serverURL(f *syncv1.SyncedFolder) string {
	return fmt.Sprintf("https://%s.%s.svc:%d", clientServiceName(f), f.Namespace, serverPort)
}

// selectorLabels select the server's pods; they never change after creation.
func selectorLabels(f *syncv1.SyncedFolder) map[string]string {
	return map[string]string{
		syncv1.LabelName:      "syncserver",
		syncv1.LabelInstance:  f.Name,
		syncv1.LabelComponent: "server",
	}
}

// commonLabels go on every object the folder owns.
func commonLabels(f *syncv1.SyncedFolder) map[string]string {
	l := selectorLabels(f)
	l[syncv1.LabelManagedBy] = syncv1.ManagedByValue
	return l
}
