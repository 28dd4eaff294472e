// Package v1alpha1 contains the API of the synced-folder operator: the SyncedFolder custom
// resource of group sync.syncedfolder.io, its condition types and reasons, and the label and
// annotation keys that the reconciler and the pod-injection webhook agree on.
// +kubebuilder:object:generate=true
// +groupName=sync.syncedfolder.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the objects of this package.
	GroupVersion = schema.GroupVersion{Group: "sync.syncedfolder.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this group-version to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
