// Package v1alpha1 contains the API of the synced-folder operator: the SyncedFolder custom
// resource of group sync.syncedfolder.io, its condition types and reasons, and the label and
// annotation keys that the reconciler and the pod-injection webhook agree on.
// +kubebuilder:object:generate=true
// +groupName=sync.syncedfolder.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the objects of this package.
	GroupVersion = schema.GroupVersion{Group: "sync.syncedfolder.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a runtime.Scheme. It is
	// apimachinery's builder, not controller-runtime's (deprecated) one, so importing the
	// API does not pull in controller-runtime.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this group-version to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes registers the kinds of this group-version and the meta/v1 types (options,
// status, watch events) that every group-version needs next to them.
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &SyncedFolder{}, &SyncedFolderList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
