// Package cluster is the end-to-end suite on a real single-node Kubernetes cluster (build tag
// e2e): the Helm chart, SyncedFolders on the embedded database and on PostgreSQL, injected
// agents syncing between pods, conflicts, deletes, server and operator restarts, access
// control, the audit log and a Prometheus scrape configured from the ServiceMonitor.
//
// It runs through hack/e2e.sh (`make e2e`), which brings the cluster up (hack/local-cluster),
// loads the images, starts PostgreSQL on the cluster bridge, passes everything in E2E_* and
// KUBECONFIG variables, and tears the cluster down afterwards. `go test ./...` does not
// compile the suite (no e2e tag).
package cluster
