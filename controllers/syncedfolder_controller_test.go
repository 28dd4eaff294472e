package controllers

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// createFolder creates a minimal SyncedFolder named name in ns, after mut.
func createFolder(t *testing.T, ns, name string, mut func(*syncv1.SyncedFolder)) *syncv1.SyncedFolder {
	t.Helper()
	f := &syncv1.SyncedFolder{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       syncv1.SyncedFolderSpec{Storage: syncv1.StorageSpec{Size: resource.MustParse("2Gi")}},
	}
	if mut != nil {
		mut(f)
	}
	if err := suite.client.Create(context.Background(), f); err != nil {
		t.Fatalf("create SyncedFolder: %v", err)
	}
	return f
}

// ownedObjects are the objects every folder gets, fresh and empty, keyed by a label for
// messages.
func ownedObjects(f *syncv1.SyncedFolder) map[string]client.Object {
	return map[string]client.Object{
		"ServiceAccount " + serverServiceAccountName(f): &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: serverServiceAccountName(f)}},
		"Secret " + credentialsSecretName(f):            &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: credentialsSecretName(f)}},
		"Secret " + caSecretName(f):                     &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: caSecretName(f)}},
		"Secret " + tlsSecretName(f):                    &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: tlsSecretName(f)}},
		"ConfigMap " + configMapName(f):                 &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: configMapName(f)}},
		"Service " + headlessServiceName(f):             &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: headlessServiceName(f)}},
		"Service " + clientServiceName(f):               &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: clientServiceName(f)}},
		"StatefulSet " + statefulSetName(f):             &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: statefulSetName(f)}},
		"NetworkPolicy " + networkPolicyName(f):         &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: networkPolicyName(f)}},
	}
}

// waitOwned waits until every owned object exists with the folder as its controller, and
// returns them filled in.
func waitOwned(t *testing.T, f *syncv1.SyncedFolder) map[string]client.Object {
	t.Helper()
	objs := ownedObjects(f)
	eventually(t, 30*time.Second, func() error {
		if err := get(f.Namespace, f.Name, f); err != nil {
			return err
		}
		for what, obj := range objs {
			if err := get(f.Namespace, obj.GetName(), obj); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			ref := metav1.GetControllerOf(obj)
			if ref == nil || ref.UID != f.UID || ref.Kind != "SyncedFolder" || !ptr.Deref(ref.BlockOwnerDeletion, false) {
				return fmt.Errorf("%s: controller reference %+v, want the folder %s", what, ref, f.UID)
			}
		}
		return nil
	})
	return objs
}

func TestCreateMakesEveryObject(t *testing.T) {
	needEnv(t)
	ns := newNamespace(t)
	f := createFolder(t, ns, "docs", func(f *syncv1.SyncedFolder) {
		f.Spec.Storage.StorageClassName = ptr.To("standard")
		f.Spec.Agent.IgnorePatterns = []string{"*.tmp"}
	})
	objs := waitOwned(t, f)

	sts := objs["StatefulSet docs"].(*appsv1.StatefulSet)
	if *sts.Spec.Replicas != 1 || sts.Spec.ServiceName != "docs-headless" {
		t.Errorf("StatefulSet replicas %d service %q", *sts.Spec.Replicas, sts.Spec.ServiceName)
	}
	vct := sts.Spec.VolumeClaimTemplates[0]
	if q := vct.Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != "2Gi" || ptr.Deref(vct.Spec.StorageClassName, "") != "standard" {
		t.Errorf("volume claim template %v %v", q, vct.Spec.StorageClassName)
	}
	pod := sts.Spec.Template
	if pod.Annotations[syncv1.AnnotationConfigHash] == "" || pod.Spec.ServiceAccountName != "docs-server" {
		t.Errorf("pod template annotations %v service account %q", pod.Annotations, pod.Spec.ServiceAccountName)
	}
	c := pod.Spec.Containers[0]
	if c.Image != "example.org/sync:test" || c.ReadinessProbe.HTTPGet.Path != "/readyz" || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Errorf("container %+v", c)
	}

	headless := objs["Service docs-headless"].(*corev1.Service)
	if headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("headless Service %+v", headless.Spec)
	}
	svc := objs["Service docs"].(*corev1.Service)
	if svc.Spec.Ports[0].Port != serverPort || svc.Spec.Selector[syncv1.LabelInstance] != "docs" {
		t.Errorf("client Service %+v", svc.Spec)
	}

	// The serving certificate verifies against the CA that agents get in the ConfigMap.
	cm := objs["ConfigMap docs-config"].(*corev1.ConfigMap)
	tlsSecret := objs["Secret docs-tls"].(*corev1.Secret)
	if tlsSecret.Type != corev1.SecretTypeTLS {
		t.Errorf("TLS Secret type %q", tlsSecret.Type)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(cm.Data[keyCACert])) {
		t.Fatal("ConfigMap holds no CA certificate")
	}
	block, _ := pem.Decode(tlsSecret.Data[keyTLSCert])
	if block == nil {
		t.Fatal("TLS Secret holds no certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"docs." + ns + ".svc", "docs." + ns + ".svc.cluster.local", "docs-0.docs-headless." + ns + ".svc"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("serving certificate for %s: %v", name, err)
		}
	}
	if cm.Data[keyIgnorePatterns] != "*.tmp\n" || cm.Data[keyServerURL] != "https://docs."+ns+".svc:8443" {
		t.Errorf("ConfigMap data %v", cm.Data)
	}
	if _, ok := cm.Data[keyCAKey]; ok {
		t.Error("the CA key leaked into the ConfigMap")
	}
	creds := objs["Secret docs-credentials"].(*corev1.Secret)
	if len(creds.Data[keyOperatorToken]) != 64 || len(creds.Data[keyTokens]) == 0 {
		t.Errorf("credentials %v", creds.Data)
	}

	got := waitCondition(t, ns, "docs", syncv1.ConditionDatabaseReady, metav1.ConditionTrue, syncv1.ReasonEmbeddedDatabase)
	if got.Status.ObservedGeneration != got.Generation || got.Status.Endpoint != "https://docs."+ns+".svc:8443" || got.Status.ConfigMapName != "docs-config" {
		t.Errorf("status %+v", got.Status)
	}
	waitCondition(t, ns, "docs", syncv1.ConditionServerReady, metav1.ConditionFalse, syncv1.ReasonServerNotReady)
	waitCondition(t, ns, "docs", syncv1.ConditionReady, metav1.ConditionFalse, syncv1.ReasonServerNotReady)

	// State changes are events, once each.
	eventually(t, 10*time.Second, func() error {
		var list eventsv1.EventList
		if err := suite.client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return err
		}
		seen := map[string]int{}
		for _, e := range list.Items {
			if e.Regarding.UID == f.UID {
				seen[e.Reason]++
			}
		}
		if seen[syncv1.ReasonEmbeddedDatabase] != 1 || seen[syncv1.ReasonServerNotReady] < 1 {
			return fmt.Errorf("events by reason %v", seen)
		}
		return nil
	})

	// Another pass with nothing changed writes nothing.
	before := map[string]string{}
	for what, obj := range objs {
		if err := get(ns, obj.GetName(), obj); err != nil {
			t.Fatal(err)
		}
		before[what] = obj.GetResourceVersion()
	}
	if _, err := suite.reconciler.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(f)}); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	for what, obj := range objs {
		if err := get(ns, obj.GetName(), obj); err != nil {
			t.Fatal(err)
		}
		if obj.GetResourceVersion() != before[what] {
			t.Errorf("%s was rewritten by a reconcile without changes", what)
		}
	}
}

func TestSpecUpdateObjectsFollow(t *testing.T) {
	needEnv(t)
	ns := newNamespace(t)
	f := createFolder(t, ns, "media", nil)
	objs := waitOwned(t, f)
	oldHash := objs["StatefulSet media"].(*appsv1.StatefulSet).Spec.Template.Annotations[syncv1.AnnotationConfigHash]

	eventually(t, 10*time.Second, func() error {
		if err := get(ns, "media", f); err != nil {
			return err
		}
		f.Spec.Server.Image = "example.org/sync:v2"
		f.Spec.Versioning.KeepVersions = ptr.To(int32(3))
		f.Spec.Agent.Mode = syncv1.AgentSendOnly
		f.Spec.Server.PodLabels = map[string]string{"team": "media"}
		f.Spec.Monitoring.Enabled = ptr.To(false)
		f.Spec.Suspend = true
		return suite.client.Update(context.Background(), f)
	})
	eventually(t, 30*time.Second, func() error {
		sts := &appsv1.StatefulSet{}
		if err := get(ns, "media", sts); err != nil {
			return err
		}
		c := sts.Spec.Template.Spec.Containers[0]
		env := envMap(c.Env)
		switch {
		case *sts.Spec.Replicas != 0:
			return fmt.Errorf("replicas %d, want 0 (suspended)", *sts.Spec.Replicas)
		case c.Image != "example.org/sync:v2":
			return fmt.Errorf("image %q", c.Image)
		case env["SYNCSERVER_KEEP_VERSIONS"].Value != "3":
			return fmt.Errorf("keep versions %q", env["SYNCSERVER_KEEP_VERSIONS"].Value)
		case sts.Spec.Template.Labels["team"] != "media":
			return fmt.Errorf("pod labels %v", sts.Spec.Template.Labels)
		}
		cm := &corev1.ConfigMap{}
		if err := get(ns, "media-config", cm); err != nil {
			return err
		}
		if cm.Data[keyMode] != "SendOnly" {
			return fmt.Errorf("ConfigMap mode %q", cm.Data[keyMode])
		}
		np := &networkingv1.NetworkPolicy{}
		if err := get(ns, "media", np); err != nil {
			return err
		}
		if n := len(np.Spec.Ingress[0].From); n != 2 {
			return fmt.Errorf("NetworkPolicy has %d peers, want 2 without monitoring", n)
		}
		return nil
	})
	got := waitCondition(t, ns, "media", syncv1.ConditionServerReady, metav1.ConditionFalse, syncv1.ReasonSuspended)
	if got.Status.ObservedGeneration != got.Generation {
		t.Errorf("observedGeneration %d of %d", got.Status.ObservedGeneration, got.Generation)
	}
	waitCondition(t, ns, "media", syncv1.ConditionMonitoringReady, metav1.ConditionFalse, syncv1.ReasonMonitoringDisabled)

	// A renewed certificate (here: the TLS Secret lost and remade) rolls the server.
	tlsSecret := objs["Secret media-tls"].(*corev1.Secret)
	if err := suite.client.Delete(context.Background(), tlsSecret); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		s := &corev1.Secret{}
		if err := get(ns, "media-tls", s); err != nil {
			return err
		}
		if s.UID == tlsSecret.UID {
			return fmt.Errorf("TLS Secret not recreated yet")
		}
		sts := &appsv1.StatefulSet{}
		if err := get(ns, "media", sts); err != nil {
			return err
		}
		if h := sts.Spec.Template.Annotations[syncv1.AnnotationConfigHash]; h == oldHash {
			return fmt.Errorf("config hash still %s", h)
		}
		return nil
	})
}

func TestOwnedObjectDeletedIsRecreated(t *testing.T) {
	needEnv(t)
	ns := newNamespace(t)
	f := createFolder(t, ns, "photos", nil)
	objs := waitOwned(t, f)
	for what, obj := range objs {
		t.Run(what, func(t *testing.T) {
			uid := obj.GetUID()
			if err := suite.client.Delete(context.Background(), obj, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
				t.Fatal(err)
			}
			eventually(t, 30*time.Second, func() error {
				fresh := obj.DeepCopyObject().(client.Object)
				if err := get(ns, obj.GetName(), fresh); err != nil {
					return err
				}
				if fresh.GetUID() == uid {
					return fmt.Errorf("not deleted and recreated yet")
				}
				if ref := metav1.GetControllerOf(fresh); ref == nil || ref.UID != f.UID {
					return fmt.Errorf("recreated without the folder as controller: %+v", ref)
				}
				return nil
			})
		})
	}
}

// storage is a spec.storage map; class "" leaves storageClassName out.
func storage(size, class string) map[string]any {
	m := map[string]any{"size": size}
	if class != "" {
		m["storageClassName"] = class
	}
	return m
}

func TestInvalidSpecsAreRejected(t *testing.T) {
	needEnv(t)
	ns := newNamespace(t)
	tests := []struct {
		name string
		spec map[string]any
		// metaName overrides the object's name.
		metaName string
		want     string
	}{
		{"malformed size", map[string]any{"storage": map[string]any{"size": "ten gigs"}}, "", "quantities must match the regular expression"},
		{"negative size", map[string]any{"storage": map[string]any{"size": "-1Gi"}}, "", "storage.size must be a positive quantity"},
		{"zero size", map[string]any{"storage": map[string]any{"size": "0"}}, "", "storage.size must be a positive quantity"},
		{"missing storage", map[string]any{}, "", "spec.storage: Required value"},
		{"postgres type without settings", map[string]any{"database": map[string]any{"type": "PostgreSQL"}}, "", "database.postgres is required when database.type is PostgreSQL"},
		{"both secret refs", map[string]any{"database": map[string]any{"type": "PostgreSQL", "postgres": map[string]any{
			"credentialsSecretRef": map[string]any{"name": "a"}, "adminSecretRef": map[string]any{"name": "b"}, "host": "db"}}}, "",
			"exactly one of postgres.credentialsSecretRef and postgres.adminSecretRef must be set"},
		{"no secret ref", map[string]any{"database": map[string]any{"type": "PostgreSQL", "postgres": map[string]any{"host": "db"}}}, "",
			"exactly one of postgres.credentialsSecretRef and postgres.adminSecretRef must be set"},
		{"admin without host", map[string]any{"database": map[string]any{"type": "PostgreSQL", "postgres": map[string]any{
			"adminSecretRef": map[string]any{"name": "b"}}}}, "", "postgres.host is required with postgres.adminSecretRef"},
		{"unknown deletion policy", map[string]any{"database": map[string]any{"type": "PostgreSQL", "postgres": map[string]any{
			"adminSecretRef": map[string]any{"name": "b"}, "host": "db", "deletionPolicy": "Shred"}}}, "", `Unsupported value: "Shred"`},
		{"port out of range", map[string]any{"database": map[string]any{"type": "PostgreSQL", "postgres": map[string]any{
			"credentialsSecretRef": map[string]any{"name": "a"}, "port": 70000}}}, "", "should be less than or equal to 65535"},
		{"unknown agent mode", map[string]any{"agent": map[string]any{"mode": "Sideways"}}, "", `Unsupported value: "Sideways"`},
		{"rescan interval too short", map[string]any{"agent": map[string]any{"rescanInterval": "100ms"}}, "", "agent.rescanInterval must be at least 1s"},
		{"rescan interval not a duration", map[string]any{"agent": map[string]any{"rescanInterval": "often"}}, "", "spec.agent.rescanInterval"},
		{"negative keepVersions", map[string]any{"versioning": map[string]any{"keepVersions": -1}}, "", "should be greater than or equal to 0"},
		{"mass delete threshold 0", map[string]any{"massDeleteThreshold": 0}, "", "should be greater than or equal to 1"},
		{"bad scrape interval", map[string]any{"monitoring": map[string]any{"interval": "5 minutes"}}, "", "spec.monitoring.interval"},
		{"duplicate service account", map[string]any{"access": map[string]any{"serviceAccounts": []any{"a", "a"}}}, "", "Duplicate value"},
		{"name too long", nil, "a-very-long-folder-name-that-cannot-name-a-service", "metadata.name must be a DNS label of at most 45 characters"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec
			if spec == nil {
				spec = map[string]any{}
			}
			if _, ok := spec["storage"]; !ok && tc.name != "missing storage" {
				spec["storage"] = map[string]any{"size": "1Gi"}
			}
			name := tc.metaName
			if name == "" {
				name = fmt.Sprintf("bad-%d", i)
			}
			u := &unstructuredFolder{}
			u.set(ns, name, spec)
			err := suite.client.Create(context.Background(), u.obj)
			if err == nil {
				t.Fatalf("accepted; want an error containing %q", tc.want)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("error %v is not Invalid", err)
			}
			if !containsFold(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
	// Updates that transition rules refuse: the object is created with from, then patched to
	// to (a merge patch, since the operator writes the object meanwhile).
	pg := func(secret string) map[string]any {
		return map[string]any{"type": "PostgreSQL", "postgres": map[string]any{"credentialsSecretRef": map[string]any{"name": secret}}}
	}
	updates := []struct {
		name     string
		field    string // the spec field changed; "" is storage
		from, to map[string]any
		want     string
	}{
		{"database type changed", "database", map[string]any{"type": "Embedded"}, pg("db"), "database is immutable"},
		{"database credentials changed", "database", pg("db"), pg("other"), "database is immutable"},
		{"database back to embedded", "database", pg("db"), map[string]any{"type": "Embedded"}, "database is immutable"},
		{"storage shrunk", "", storage("2Gi", ""), storage("1536Mi", ""), "storage.size cannot shrink from 2Gi to 1536Mi: a volume can only grow"},
		{"storage shrunk to bytes", "", storage("1Gi", ""), storage("1000000000", ""), "storage.size cannot shrink from 1Gi to 1000000000"},
		{"storage class changed", "", storage("1Gi", "fast"), storage("1Gi", "slow"), "storage.storageClassName is immutable"},
		{"storage class set later", "", storage("1Gi", ""), storage("1Gi", "fast"), "storage.storageClassName is immutable"},
	}
	for i, tc := range updates {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("bad-update-%d", i)
			field := cmp.Or(tc.field, "storage")
			spec := func(v map[string]any) map[string]any {
				out := map[string]any{field: v}
				if field != "storage" {
					out["storage"] = storage("1Gi", "")
				}
				return out
			}
			u := &unstructuredFolder{}
			u.set(ns, name, spec(tc.from))
			if err := suite.client.Create(context.Background(), u.obj); err != nil {
				t.Fatalf("create: %v", err)
			}
			u.set(ns, name, spec(tc.to))
			err := suite.client.Patch(context.Background(), u.obj, client.Merge)
			if err == nil || !apierrors.IsInvalid(err) || !containsFold(err.Error(), tc.want) {
				t.Fatalf("update %v → %v: error %v, want Invalid saying %q", tc.from, tc.to, err, tc.want)
			}
			// Writing the same value back is accepted (growing is TestStorageGrowsTheServerClaim).
			u.set(ns, name, spec(tc.from))
			if err := suite.client.Patch(context.Background(), u.obj, client.Merge); err != nil {
				t.Errorf("same %s: %v", field, err)
			}
		})
	}
	// The samples shipped in config/samples are accepted as they are (dry run: nothing is
	// reconciled).
	samples := loadSamples(t)
	if len(samples) < 3 {
		t.Fatalf("%d sample objects, want at least 3", len(samples))
	}
	for _, sample := range samples {
		sample.SetNamespace(ns)
		if err := suite.client.Create(context.Background(), sample, client.DryRunAll); err != nil {
			t.Errorf("sample %s %s rejected: %v", sample.GetKind(), sample.GetName(), err)
		}
	}
}
