package controllers

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// serverToken requests a token of the folder's server ServiceAccount, as the kubelet
// mounts it into the server's pod.
func serverToken(t *testing.T, f *syncv1.SyncedFolder) string {
	t.Helper()
	cs, err := kubernetes.NewForConfig(suite.cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(f.Namespace).CreateToken(context.Background(), serverServiceAccountName(f),
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: new(int64(600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("request the server's token: %v", err)
	}
	return tr.Status.Token
}

// serverKubeconfig writes a kubeconfig in dir that authenticates as the folder's server
// ServiceAccount, standing in for the in-cluster configuration of the server's pod.
func serverKubeconfig(t *testing.T, f *syncv1.SyncedFolder, dir string) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: suite.cfg.Host, CertificateAuthorityData: suite.cfg.CAData}
	kc.AuthInfos["server"] = &clientcmdapi.AuthInfo{Token: serverToken(t, f)}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "server"}
	kc.CurrentContext = "envtest"
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// reviewAsServer creates a TokenReview with the server's own credentials: what the server
// does for every new agent token, allowed only by the binding the operator made.
func reviewAsServer(serverToken string) error {
	cfg := rest.AnonymousClientConfig(suite.cfg)
	cfg.BearerToken = serverToken
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	_, err = cs.AuthenticationV1().TokenReviews().Create(context.Background(),
		&authv1.TokenReview{Spec: authv1.TokenReviewSpec{Token: "not-a-token"}}, metav1.CreateOptions{})
	return err
}

func TestTokenReviewBinding(t *testing.T) {
	needEnv(t)
	ns := newNamespace(t)
	f := createFolder(t, ns, "docs", func(f *syncv1.SyncedFolder) {
		f.Spec.Access.ServiceAccounts = []string{"writer", "app"}
	})
	waitOwned(t, f)

	binding := &rbacv1.ClusterRoleBinding{}
	eventually(t, 30*time.Second, func() error { return get("", tokenReviewBindingName(f), binding) })
	want := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: serverServiceAccountName(f), Namespace: ns}
	if len(binding.Subjects) != 1 || binding.Subjects[0] != want || binding.RoleRef.Name != tokenReviewClusterRoleName {
		t.Fatalf("binding subjects %+v role %+v", binding.Subjects, binding.RoleRef)
	}
	if binding.Labels[syncv1.LabelInstance] != "docs" || binding.Labels[syncv1.LabelFolderNamespace] != ns {
		t.Errorf("binding labels %v do not name the folder", binding.Labels)
	}
	role := &rbacv1.ClusterRole{}
	if err := get("", tokenReviewClusterRoleName, role); err != nil {
		t.Fatal(err)
	}
	if len(role.Rules) != 1 || len(role.Rules[0].Verbs) != 1 || role.Rules[0].Verbs[0] != "create" || role.Rules[0].Resources[0] != "tokenreviews" {
		t.Errorf("ClusterRole grants %+v; want create tokenreviews only", role.Rules)
	}
	if err := get(ns, "docs", f); err != nil {
		t.Fatal(err)
	}
	if !controllerutil.ContainsFinalizer(f, syncv1.FinalizerTokenReviewBinding) {
		t.Errorf("finalizers %v", f.Finalizers)
	}

	// The server is configured for the folder's audience and access list.
	sts := waitOwned(t, f)["StatefulSet docs"].(*appsv1.StatefulSet)
	env := envMap(sts.Spec.Template.Spec.Containers[0].Env)
	if env["SYNCSERVER_TOKENREVIEW_AUDIENCE"].Value != syncv1.TokenAudience(ns, "docs") ||
		env["SYNCSERVER_TOKENREVIEW_NAMESPACE"].Value != ns ||
		env["SYNCSERVER_ALLOWED_SERVICE_ACCOUNTS"].Value != ns+"/app,"+ns+"/writer" {
		t.Errorf("server env %+v", env)
	}

	// The binding really lets the server's ServiceAccount review tokens, and nothing else.
	token := serverToken(t, f)
	eventually(t, 30*time.Second, func() error { return reviewAsServer(token) })
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: suite.cfg.Host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: suite.cfg.CAData}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the server's ServiceAccount can list Secrets: %v", err)
	}

	// A binding someone removed comes back with the next reconcile (bindings are not
	// watched: that would mean watching every binding of the cluster); touching the folder
	// brings one about.
	if err := suite.client.Delete(context.Background(), binding); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(f.DeepCopy())
	metav1.SetMetaDataAnnotation(&f.ObjectMeta, "test/touch", "1")
	if err := suite.client.Patch(context.Background(), f, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		b := &rbacv1.ClusterRoleBinding{}
		if err := get("", tokenReviewBindingName(f), b); err != nil {
			return err
		}
		if b.UID == binding.UID {
			return errors.New("still the deleted binding")
		}
		return nil
	})

	// Deleting the folder deletes the binding (no owner reference can), then the folder.
	if err := suite.client.Delete(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		if err := get("", tokenReviewBindingName(f), &rbacv1.ClusterRoleBinding{}); err == nil {
			return errors.New("binding still there")
		} else if !apierrors.IsNotFound(err) {
			return fmt.Errorf("get binding: %w", err)
		}
		if err := get(ns, "docs", &syncv1.SyncedFolder{}); err == nil {
			return errors.New("folder still there")
		} else if !apierrors.IsNotFound(err) {
			return fmt.Errorf("get folder: %w", err)
		}
		return nil
	})
	eventually(t, 30*time.Second, func() error {
		if err := reviewAsServer(token); err == nil {
			return errors.New("TokenReview still allowed after the folder's deletion")
		} else if !apierrors.IsForbidden(err) {
			return fmt.Errorf("TokenReview after the folder's deletion: %w", err)
		}
		return nil
	})
	// The shared ClusterRole stays for other folders.
	if err := get("", tokenReviewClusterRoleName, &rbacv1.ClusterRole{}); err != nil {
		t.Errorf("shared ClusterRole: %v", err)
	}
}
