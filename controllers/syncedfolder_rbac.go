package controllers

import (
	"context"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// The server verifies agents' tokens with TokenReviews, which are cluster-scoped: its
// ServiceAccount needs a ClusterRoleBinding. It is bound to a ClusterRole of the operator's
// own that allows creating TokenReviews and nothing else, narrower than the built-in
// system:auth-delegator (which adds SubjectAccessReviews the server never makes).
//
// The operator may create ClusterRoles and ClusterRoleBindings, but RBAC's escalation
// check limits it to granting permissions it holds itself, and it holds no more than
// "create tokenreviews" beyond its own needs (the markers below). Both objects are read
// with the API reader: caching them would mean watching every binding of the cluster.

// tokenReviewClusterRoleName is the ClusterRole every folder's server is bound to.
const tokenReviewClusterRoleName = "synced-folder-tokenreview"

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=create
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=get;update,resourceNames=synced-folder-tokenreview
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterrolebindings,verbs=get;create;update;delete

// tokenReviewBindingName names a folder's binding; ClusterRoleBinding names may hold
// colons, and namespace and folder names cannot, so the name is unique per folder.
func tokenReviewBindingName(f *syncv1.SyncedFolder) string {
	return "synced-folder-tokenreview:" + f.Namespace + ":" + f.Name
}

// buildTokenReviewClusterRole allows creating TokenReviews, nothing else.
func buildTokenReviewClusterRole() *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: tokenReviewClusterRoleName, Labels: map[string]string{syncv1.LabelManagedBy: syncv1.ManagedByValue}},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"authentication.k8s.io"},
			Resources: []string{"tokenreviews"},
			Verbs:     []string{"create"},
		}},
	}
}

// buildTokenReviewBinding binds the folder's server ServiceAccount to the TokenReview
// ClusterRole; its labels name the folder, since no owner reference can.
func buildTokenReviewBinding(f *syncv1.SyncedFolder) *rbacv1.ClusterRoleBinding {
	labels := commonLabels(f)
	labels[syncv1.LabelFolderNamespace] = f.Namespace
	return &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: tokenReviewBindingName(f), Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: tokenReviewClusterRoleName},
		Subjects: []rbacv1.Subject{{
			Kind: rbacv1.ServiceAccountKind, Name: serverServiceAccountName(f), Namespace: f.Namespace,
		}},
	}
}

// ensureTokenReviewBinding adds the binding's finalizer, then keeps the shared ClusterRole
// and the folder's ClusterRoleBinding. The finalizer comes first, so that no binding ever
// exists without something to delete it.
func (r *SyncedFolderReconciler) ensureTokenReviewBinding(ctx context.Context, f *syncv1.SyncedFolder) error {
	if !controllerutil.ContainsFinalizer(f, syncv1.FinalizerTokenReviewBinding) {
		patch := client.MergeFrom(f.DeepCopy())
		controllerutil.AddFinalizer(f, syncv1.FinalizerTokenReviewBinding)
		if err := r.Patch(ctx, f, patch); err != nil {
			return fmt.Errorf("add finalizer %q: %w", syncv1.FinalizerTokenReviewBinding, err)
		}
	}
	wantRole := buildTokenReviewClusterRole()
	role := &rbacv1.ClusterRole{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Name: wantRole.Name}, role)
	switch {
	case apierrors.IsNotFound(err):
		if err := r.Create(ctx, wantRole); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create ClusterRole %q: %w", wantRole.Name, err)
		}
	case err != nil:
		return fmt.Errorf("get ClusterRole %q: %w", wantRole.Name, err)
	case !apiequality.Semantic.DeepEqual(role.Rules, wantRole.Rules) || !hasLabels(role, wantRole.Labels):
		role.Rules = wantRole.Rules
		mergeLabels(role, wantRole.Labels)
		if err := r.Update(ctx, role); err != nil {
			return fmt.Errorf("update ClusterRole %q: %w", role.Name, err)
		}
	}

	want := buildTokenReviewBinding(f)
	b := &rbacv1.ClusterRoleBinding{}
	err = r.APIReader.Get(ctx, types.NamespacedName{Name: want.Name}, b)
	switch {
	case apierrors.IsNotFound(err):
		if err := r.Create(ctx, want); err != nil {
			return fmt.Errorf("create ClusterRoleBinding %q: %w", want.Name, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("get ClusterRoleBinding %q: %w", want.Name, err)
	case b.RoleRef != want.RoleRef:
		// roleRef is immutable: a binding someone pointed elsewhere is replaced.
		if err := r.Delete(ctx, b); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("delete ClusterRoleBinding %q with role %q: %w", b.Name, b.RoleRef.Name, err)
		}
		if err := r.Create(ctx, want); err != nil {
			return fmt.Errorf("create ClusterRoleBinding %q: %w", want.Name, err)
		}
		return nil
	case !apiequality.Semantic.DeepEqual(b.Subjects, want.Subjects) || !hasLabels(b, want.Labels):
		b.Subjects = want.Subjects
		mergeLabels(b, want.Labels)
		if err := r.Update(ctx, b); err != nil {
			return fmt.Errorf("update ClusterRoleBinding %q: %w", b.Name, err)
		}
	}
	return nil
}

// hasLabels reports whether obj carries every label of want.
func hasLabels(obj metav1.Object, want map[string]string) bool {
	got := obj.GetLabels()
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// finalizeTokenReviewBinding deletes the folder's ClusterRoleBinding and drops its
// finalizer. The shared ClusterRole stays: other folders' bindings use it.
func (r *SyncedFolderReconciler) finalizeTokenReviewBinding(ctx context.Context, f *syncv1.SyncedFolder) error {
	if !controllerutil.ContainsFinalizer(f, syncv1.FinalizerTokenReviewBinding) {
		return nil
	}
	b := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: tokenReviewBindingName(f)}}
	if err := r.Delete(ctx, b); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete ClusterRoleBinding %q: %w", b.Name, err)
	}
	patch := client.MergeFrom(f.DeepCopy())
	controllerutil.RemoveFinalizer(f, syncv1.FinalizerTokenReviewBinding)
	if err := r.Patch(ctx, f, patch); err != nil {
		return fmt.Errorf("remove finalizer %q: %w", syncv1.FinalizerTokenReviewBinding, err)
	}
	return nil
}
