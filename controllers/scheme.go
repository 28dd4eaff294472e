package controllers

import (
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// NewScheme returns a scheme with every type the operator reads or writes.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(monitoringv1.AddToScheme(s))
	utilruntime.Must(syncv1.AddToScheme(s))
	return s
}

// CacheOptions keeps only the operator's own Secrets in the manager's cache: caching every
// Secret of the cluster would cost memory and read access the operator does not need. Users'
// Secrets (database credentials) are read with the API reader instead. Likewise only the
// servers' volume claims are cached (volumeClaimCacheOptions).
func CacheOptions() cache.Options {
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Secret{}:                {Label: labels.SelectorFromSet(labels.Set{syncv1.LabelManagedBy: syncv1.ManagedByValue})},
		&corev1.PersistentVolumeClaim{}: volumeClaimCacheOptions(),
		// Pods, metadata only and stripped, for the injection safety net (syncedfolder_pods.go).
		podMetadata(): {Transform: stripPodMetadata},
	}}
}

// ClientOptions makes the manager's client read ServiceMonitors from the API server, not the
// cache: their informer exists only while the CRD is served, and a cached read after the CRD
// is removed would wait for a sync that never comes and hold a reconcile worker.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&monitoringv1.ServiceMonitor{}}}}
}
