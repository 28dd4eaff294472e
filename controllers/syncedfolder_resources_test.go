package controllers

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

var testSettings = Settings{
	ServerImage: "example.org/sync:1", AgentImage: "example.org/sync:1", ClusterDomain: "cluster.local",
	OperatorNamespace: "ops", OperatorPodLabels: map[string]string{"control-plane": "controller-manager"},
}

func folder(mut func(*syncv1.SyncedFolder)) *syncv1.SyncedFolder {
	f := &syncv1.SyncedFolder{
		ObjectMeta: metav1.ObjectMeta{Name: "docs", Namespace: "team"},
		Spec:       syncv1.SyncedFolderSpec{Storage: syncv1.StorageSpec{Size: resource.MustParse("5Gi")}},
	}
	if mut != nil {
		mut(f)
	}
	return f
}

func envMap(env []corev1.EnvVar) map[string]corev1.EnvVar {
	m := map[string]corev1.EnvVar{}
	for _, e := range env {
		m[e.Name] = e
	}
	return m
}

func TestBuildStatefulSet(t *testing.T) {
	tests := []struct {
		name  string
		mut   func(*syncv1.SyncedFolder)
		check func(t *testing.T, f *syncv1.SyncedFolder, env map[string]corev1.EnvVar, c corev1.Container, replicas int32)
	}{
		{"embedded defaults", nil, func(t *testing.T, f *syncv1.SyncedFolder, env map[string]corev1.EnvVar, c corev1.Container, replicas int32) {
			if replicas != 1 {
				t.Errorf("replicas = %d", replicas)
			}
			if c.Image != testSettings.ServerImage {
				t.Errorf("image = %q", c.Image)
			}
			if _, ok := env["SYNCSERVER_DATABASE_URL"]; ok {
				t.Error("embedded database has a database URL")
			}
			want := map[string]string{
				"SYNCSERVER_LISTEN": ":8443", "SYNCSERVER_DATA_DIR": "/data", "SYNCSERVER_KEEP_VERSIONS": "10",
				"SYNCSERVER_KEEP_VERSIONS_AGE": "720h0m0s", "SYNCSERVER_TOKEN_FILE": "/etc/syncserver/credentials/tokens",
				"SYNCSERVER_TLS_CERT_FILE": "/etc/syncserver/tls/tls.crt", "SYNCSERVER_TLS_KEY_FILE": "/etc/syncserver/tls/tls.key",
				"SYNCSERVER_TOKENREVIEW_AUDIENCE": "sync.syncedfolder.io/team/docs", "SYNCSERVER_TOKENREVIEW_NAMESPACE": "team",
			}
			if _, ok := env["SYNCSERVER_ALLOWED_SERVICE_ACCOUNTS"]; ok {
				t.Error("an empty access list is passed on; the server's default (the whole namespace) should apply")
			}
			if len(c.Command) != 1 || c.Command[0] != "/syncserver" {
				t.Errorf("command %q, want the image's /syncserver", c.Command)
			}
			for k, v := range want {
				if env[k].Value != v {
					t.Errorf("%s = %q, want %q", k, env[k].Value, v)
				}
			}
		}},
		{"suspended scales to zero", func(f *syncv1.SyncedFolder) { f.Spec.Suspend = true },
			func(t *testing.T, _ *syncv1.SyncedFolder, _ map[string]corev1.EnvVar, _ corev1.Container, replicas int32) {
				if replicas != 0 {
					t.Errorf("replicas = %d, want 0", replicas)
				}
			}},
		{"image, pull policy and resources from spec", func(f *syncv1.SyncedFolder) {
			f.Spec.Server.Image = "mine:2"
			f.Spec.Server.ImagePullPolicy = corev1.PullNever
			f.Spec.Server.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}
		}, func(t *testing.T, _ *syncv1.SyncedFolder, _ map[string]corev1.EnvVar, c corev1.Container, _ int32) {
			if c.Image != "mine:2" || c.ImagePullPolicy != corev1.PullNever || c.Resources.Limits.Memory().String() != "1Gi" {
				t.Errorf("image %q, pull %q, limits %v", c.Image, c.ImagePullPolicy, c.Resources.Limits)
			}
		}},
		{"versioning becomes flags", func(f *syncv1.SyncedFolder) {
			f.Spec.Versioning = syncv1.VersioningSpec{KeepVersions: ptr.To(int32(3)), MaxAge: &metav1.Duration{Duration: 90 * time.Minute}}
		}, func(t *testing.T, _ *syncv1.SyncedFolder, env map[string]corev1.EnvVar, _ corev1.Container, _ int32) {
			if env["SYNCSERVER_KEEP_VERSIONS"].Value != "3" || env["SYNCSERVER_KEEP_VERSIONS_AGE"].Value != "1h30m0s" {
				t.Errorf("keep %q age %q", env["SYNCSERVER_KEEP_VERSIONS"].Value, env["SYNCSERVER_KEEP_VERSIONS_AGE"].Value)
			}
		}},
		{"access list becomes the allowed service accounts, sorted", func(f *syncv1.SyncedFolder) {
			f.Spec.Access.ServiceAccounts = []string{"writer", "app"}
		}, func(t *testing.T, _ *syncv1.SyncedFolder, env map[string]corev1.EnvVar, _ corev1.Container, _ int32) {
			if got := env["SYNCSERVER_ALLOWED_SERVICE_ACCOUNTS"].Value; got != "team/app,team/writer" {
				t.Errorf("allowed service accounts %q", got)
			}
		}},
		{"user credentials are used as they are", func(f *syncv1.SyncedFolder) {
			f.Spec.Database = syncv1.DatabaseSpec{Type: syncv1.DatabasePostgreSQL, Postgres: &syncv1.PostgresSpec{
				CredentialsSecretRef: &syncv1.SecretKeyRef{Name: "pg", Key: "dsn"},
			}}
		}, func(t *testing.T, _ *syncv1.SyncedFolder, env map[string]corev1.EnvVar, _ corev1.Container, _ int32) {
			ref := env["SYNCSERVER_DATABASE_URL"].ValueFrom.SecretKeyRef
			if ref.Name != "pg" || ref.Key != "dsn" {
				t.Errorf("database URL from %s/%s", ref.Name, ref.Key)
			}
		}},
		{"provisioned credentials come from the owned Secret", func(f *syncv1.SyncedFolder) {
			f.Spec.Database = syncv1.DatabaseSpec{Type: syncv1.DatabasePostgreSQL, Postgres: &syncv1.PostgresSpec{
				AdminSecretRef: &corev1.LocalObjectReference{Name: "admin"}, Host: "db",
			}}
		}, func(t *testing.T, _ *syncv1.SyncedFolder, env map[string]corev1.EnvVar, _ corev1.Container, _ int32) {
			ref := env["SYNCSERVER_DATABASE_URL"].ValueFrom.SecretKeyRef
			if ref.Name != "docs-database" || ref.Key != "url" {
				t.Errorf("database URL from %s/%s", ref.Name, ref.Key)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := folder(tc.mut)
			sts := buildStatefulSet(f, testSettings, "h1")
			if len(sts.Spec.Template.Spec.Containers) != 1 {
				t.Fatalf("%d containers", len(sts.Spec.Template.Spec.Containers))
			}
			c := sts.Spec.Template.Spec.Containers[0]
			tc.check(t, f, envMap(c.Env), c, *sts.Spec.Replicas)
		})
	}
}

func TestBuildStatefulSetInvariants(t *testing.T) {
	f := folder(func(f *syncv1.SyncedFolder) {
		f.Spec.Storage.StorageClassName = ptr.To("fast")
		// Extra pod labels must not break the selector.
		f.Spec.Server.PodLabels = map[string]string{syncv1.LabelInstance: "hijack", "team": "a"}
		f.Spec.Server.PodAnnotations = map[string]string{"note": "x"}
	})
	sts := buildStatefulSet(f, testSettings, "abc")
	pod := sts.Spec.Template
	for k, v := range sts.Spec.Selector.MatchLabels {
		if pod.Labels[k] != v {
			t.Errorf("pod label %s = %q, selector wants %q", k, pod.Labels[k], v)
		}
	}
	if pod.Labels["team"] != "a" || pod.Annotations["note"] != "x" || pod.Annotations[syncv1.AnnotationConfigHash] != "abc" {
		t.Errorf("pod metadata %v %v", pod.Labels, pod.Annotations)
	}
	vct := sts.Spec.VolumeClaimTemplates[0]
	if got := vct.Spec.Resources.Requests[corev1.ResourceStorage]; got.String() != "5Gi" || *vct.Spec.StorageClassName != "fast" {
		t.Errorf("claim %v class %v", got, vct.Spec.StorageClassName)
	}
	ps := pod.Spec.SecurityContext
	if !*ps.RunAsNonRoot || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %+v", ps)
	}
	c := pod.Spec.Containers[0]
	sc := c.SecurityContext
	if !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || sc.Capabilities.Drop[0] != "ALL" ||
		sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container security context %+v", sc)
	}
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.StartupProbe.HTTPGet.Path != "/readyz" || c.ReadinessProbe.HTTPGet.Scheme != corev1.URISchemeHTTPS {
		t.Errorf("probes %+v", c.ReadinessProbe.HTTPGet)
	}
	if sts.Spec.ServiceName != "docs-headless" {
		t.Errorf("service name %q", sts.Spec.ServiceName)
	}
	if !*pod.Spec.AutomountServiceAccountToken || pod.Spec.ServiceAccountName != "docs-server" {
		t.Errorf("the server needs its service-account token for TokenReviews: automount %v, account %q",
			*pod.Spec.AutomountServiceAccountToken, pod.Spec.ServiceAccountName)
	}
	// Changing the access list rolls the server; reordering it does not.
	withAccess := func(names ...string) *syncv1.SyncedFolder {
		g := f.DeepCopy()
		g.Spec.Access.ServiceAccounts = names
		return g
	}
	base := buildStatefulSet(withAccess("a", "b"), testSettings, "abc").Spec.Template
	if reordered := buildStatefulSet(withAccess("b", "a"), testSettings, "abc").Spec.Template; !apiequality.Semantic.DeepEqual(base, reordered) {
		t.Error("reordering the access list changes the pod template")
	}
	if changed := buildStatefulSet(withAccess("a"), testSettings, "abc").Spec.Template; apiequality.Semantic.DeepEqual(base, changed) {
		t.Error("changing the access list does not change the pod template")
	}
	if a, b := buildStatefulSet(f, testSettings, "abc"), buildStatefulSet(f, testSettings, "def"); a.Spec.Template.Annotations[syncv1.AnnotationConfigHash] == b.Spec.Template.Annotations[syncv1.AnnotationConfigHash] {
		t.Error("a new config hash does not change the pod template")
	}
}

func TestConfigHash(t *testing.T) {
	a := configHash(map[string][]byte{"x": []byte("1"), "y": []byte("2")}, nil)
	if b := configHash(map[string][]byte{"y": []byte("2"), "x": []byte("1")}, nil); a != b {
		t.Error("hash depends on map order")
	}
	for _, other := range [][]map[string][]byte{
		{{"x": []byte("1"), "y": []byte("3")}, nil},
		{{"x": []byte("1")}, {"y": []byte("2")}},
		{{"x": []byte("1"), "y": []byte("2")}, {"url": []byte("postgres://")}},
	} {
		if configHash(other...) == a {
			t.Errorf("hash of %v equals the original", other)
		}
	}
}

func TestBuildNetworkPolicy(t *testing.T) {
	tests := []struct {
		name      string
		mut       func(*syncv1.SyncedFolder)
		wantPeers int
	}{
		{"agents, operator and default monitoring", nil, 3},
		{"monitoring off drops the scrapers", func(f *syncv1.SyncedFolder) { f.Spec.Monitoring.Enabled = ptr.To(false) }, 2},
		{"custom scrapers", func(f *syncv1.SyncedFolder) {
			f.Spec.Monitoring.ScrapeFrom = make([]networkingv1.NetworkPolicyPeer, 2)
		}, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			np := buildNetworkPolicy(folder(tc.mut), testSettings)
			from := np.Spec.Ingress[0].From
			if len(from) != tc.wantPeers {
				t.Fatalf("%d peers, want %d", len(from), tc.wantPeers)
			}
			if from[0].PodSelector.MatchLabels[syncv1.LabelAgentFor] != "docs" {
				t.Errorf("first peer %+v is not the folder's agents", from[0])
			}
			if from[1].NamespaceSelector.MatchLabels[corev1.LabelMetadataName] != "ops" {
				t.Errorf("second peer %+v is not the operator", from[1])
			}
			if np.Spec.Ingress[0].Ports[0].Port.IntValue() != serverPort {
				t.Errorf("port %v", np.Spec.Ingress[0].Ports[0].Port)
			}
		})
	}
}

func TestBuildServiceMonitorAndConfigMap(t *testing.T) {
	f := folder(func(f *syncv1.SyncedFolder) {
		f.Spec.Monitoring.Labels = map[string]string{"release": "prom"}
		f.Spec.Agent.IgnorePatterns = []string{"*.tmp", ".cache/"}
		f.Spec.Agent.Mode = syncv1.AgentReceiveOnly
	})
	sm := buildServiceMonitor(f)
	ep := sm.Spec.Endpoints[0]
	if sm.Labels["release"] != "prom" || ep.Interval != "30s" || ep.Port != "https" || ep.TLSConfig.CA.ConfigMap.Name != "docs-config" ||
		*ep.TLSConfig.ServerName != "docs.team.svc" || sm.Spec.Selector.MatchLabels[labelServiceRole] != "client" {
		t.Errorf("service monitor %+v", sm)
	}
	cm := buildConfigMap(f, []byte("CA"))
	want := map[string]string{
		keyCACert: "CA", keyServerURL: "https://docs.team.svc:8443", keyMode: "ReceiveOnly", keyIgnorePatterns: "*.tmp\n.cache/\n",
		keyRescanInterval: "5m0s", keyConflictPolicy: "RemoteWins", keyMassDeleteThreshold: "50",
	}
	for k, v := range want {
		if cm.Data[k] != v {
			t.Errorf("%s = %q, want %q", k, cm.Data[k], v)
		}
	}
}

func TestNamesAndHelpers(t *testing.T) {
	long := folder(func(f *syncv1.SyncedFolder) {
		f.Namespace = strings.Repeat("n", 63)
		f.Name = strings.Repeat("a", 45)
	})
	if n := provisionedName(long); len(n) > 63 {
		t.Errorf("provisioned name %q is %d bytes", n, len(n))
	}
	a := folder(func(f *syncv1.SyncedFolder) { f.Namespace, f.Name = "a-b", "c" })
	b := folder(func(f *syncv1.SyncedFolder) { f.Namespace, f.Name = "a", "b-c" })
	if provisionedName(a) == provisionedName(b) {
		t.Errorf("a-b/c and a/b-c share the name %q", provisionedName(a))
	}
	if got := provisionedName(folder(nil)); got != provisionedName(folder(nil)) || !strings.HasPrefix(got, "sf_team_docs_") {
		t.Errorf("provisioned name %q", got)
	}
	names := serverDNSNames(folder(nil), "cluster.local")
	if names[0] != "docs.team.svc" || names[3] != "docs.team.svc.cluster.local" || names[5] != "docs-0.docs-headless.team.svc.cluster.local" {
		t.Errorf("dns names %v", names)
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	if got := postgresURL("u", "p@ss", "db.example", 0, "d", ""); got != "postgres://u:p%40ss@db.example:5432/d?sslmode=require" {
		t.Errorf("postgres URL %q", got)
	}
	if got := quoteLiteral("it's"); got != "'it''s'" {
		t.Errorf("quoted %q", got)
	}
}

func TestBuildTokenReviewRBAC(t *testing.T) {
	f := folder(nil)
	role := buildTokenReviewClusterRole()
	if len(role.Rules) != 1 || !reflect.DeepEqual(role.Rules[0].Verbs, []string{"create"}) ||
		!reflect.DeepEqual(role.Rules[0].Resources, []string{"tokenreviews"}) || !reflect.DeepEqual(role.Rules[0].APIGroups, []string{"authentication.k8s.io"}) {
		t.Errorf("ClusterRole rules %+v; want create tokenreviews only", role.Rules)
	}
	b := buildTokenReviewBinding(f)
	if b.Name != "synced-folder-tokenreview:team:docs" || b.RoleRef.Name != role.Name || b.RoleRef.Kind != "ClusterRole" {
		t.Errorf("binding %q → %+v", b.Name, b.RoleRef)
	}
	if len(b.Subjects) != 1 || b.Subjects[0] != (rbacv1.Subject{Kind: "ServiceAccount", Name: "docs-server", Namespace: "team"}) {
		t.Errorf("subjects %+v", b.Subjects)
	}
	if b.Labels[syncv1.LabelInstance] != "docs" || b.Labels[syncv1.LabelFolderNamespace] != "team" {
		t.Errorf("binding labels %v do not name the folder", b.Labels)
	}
}
