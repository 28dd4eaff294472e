// Package chart tests charts/synced-folder with a real helm (built from the Go module proxy
// by hack/tools.sh): lint, render with default and non-default values into typed objects,
// compare with what controller-gen generates into config/, and install into envtest.
package chart

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"

	"github.com/syncedfolder/synced-folder/controllers/podinject"
)

const (
	root        = "../.."
	chartDir    = root + "/charts/synced-folder"
	kubeVersion = "1.37.0"
	releaseNS   = "synced-folder-system"
	releaseName = "sf"
	webhookName = "mpod.sync.syncedfolder.io"
	// The manager finds its webhook objects by these names (cert rotator, serving).
	webhookCfg   = podinject.WebhookConfigurationName
	webhookSvc   = podinject.ServiceName
	webhookCert  = podinject.CertSecretName
	managerName  = "synced-folder-controller-manager"
	operatorRole = "synced-folder-manager-role"
)

// nonDefault turns on every optional part and off what is on by default.
var nonDefault = []string{
	"webhook.certManagement=cert-manager",
	"webhook.failurePolicy=Fail",
	"webhook.excludeNamespaces={infra}",
	"grafana.dashboards.enabled=true",
	"grafana.dashboards.namespace=monitoring",
	"metrics.serviceMonitor.enabled=true",
	"metrics.serviceMonitor.labels.release=prometheus",
	"agent.podMonitor.enabled=true",
	"crds.enabled=false",
	"image.tag=v9.9.9",
	"agent.image=example.com/agent:1",
}

var helmOnce struct {
	sync.Once
	path string
	err  error
}

// helm returns the pinned helm from hack/tools.sh (built on first use). Without it the test
// is skipped, or fails when CI=true.
func helm(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		cmd := exec.Command("bash", filepath.Join(root, "hack", "tools.sh"), "helm")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			helmOnce.err = fmt.Errorf("hack/tools.sh helm: %w\n%s", err, stderr.String())
			return
		}
		helmOnce.path = strings.TrimSpace(string(out))
	})
	if helmOnce.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("helm is required (CI=true): %v", helmOnce.err)
		}
		t.Skipf("helm unavailable: %v", helmOnce.err)
	}
	return helmOnce.path
}

// runHelm runs helm with args and returns its standard output.
func runHelm(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(helm(t), args...)
	// Keep helm away from the user's configuration and caches.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return out
}

// render runs helm template with the given --set values.
func render(t *testing.T, set ...string) []byte {
	t.Helper()
	args := []string{"template", releaseName, chartDir, "--namespace", releaseNS, "--kube-version", kubeVersion,
		"--api-versions", "monitoring.coreos.com/v1", "--api-versions", "cert-manager.io/v1"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return runHelm(t, args...)
}

// docs splits a multi-document YAML stream into its non-empty documents.
func docs(stream []byte) [][]byte {
	var out [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(stream), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			out = append(out, []byte(d))
		}
	}
	return out
}

func stripComments(s string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// object is one rendered document decoded strictly into its typed struct (cert-manager
// objects, which have no Go types here, stay unstructured).
type object struct {
	kind, name, namespace string
	typed                 any
	raw                   []byte
}

// typedFor returns a pointer to the Go type of apiVersion/kind.
func typedFor(apiVersion, kind string) (any, bool) {
	switch apiVersion + "/" + kind {
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, true
	case "v1/Service":
		return &corev1.Service{}, true
	case "v1/Namespace":
		return &corev1.Namespace{}, true
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "v1/Secret":
		return &corev1.Secret{}, true
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, true
	case "rbac.authorization.k8s.io/v1/ClusterRole":
		return &rbacv1.ClusterRole{}, true
	case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}, true
	case "rbac.authorization.k8s.io/v1/Role":
		return &rbacv1.Role{}, true
	case "rbac.authorization.k8s.io/v1/RoleBinding":
		return &rbacv1.RoleBinding{}, true
	case "admissionregistration.k8s.io/v1/MutatingWebhookConfiguration":
		return &admissionregistrationv1.MutatingWebhookConfiguration{}, true
	case "apiextensions.k8s.io/v1/CustomResourceDefinition":
		return &apiextensionsv1.CustomResourceDefinition{}, true
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, true
	case "monitoring.coreos.com/v1/PodMonitor":
		return &monitoringv1.PodMonitor{}, true
	case "cert-manager.io/v1/Certificate", "cert-manager.io/v1/Issuer":
		return &unstructured.Unstructured{}, true
	}
	return nil, false
}

// decodeAll decodes every document of a rendered stream strictly (unknown fields and
// duplicate keys are errors) and returns them by "Kind/name".
func decodeAll(t *testing.T, stream []byte) map[string]object {
	t.Helper()
	objs := map[string]object{}
	for _, d := range docs(stream) {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(d, &meta); err != nil {
			t.Fatalf("document is not YAML: %v\n%s", err, d)
		}
		into, ok := typedFor(meta.APIVersion, meta.Kind)
		if !ok {
			t.Fatalf("rendered %s %s/%s has no typed struct in this test: add one", meta.APIVersion, meta.Kind, meta.Metadata.Name)
		}
		if u, isU := into.(*unstructured.Unstructured); isU {
			if err := yaml.UnmarshalStrict(d, &u.Object); err != nil {
				t.Fatalf("%s/%s: %v", meta.Kind, meta.Metadata.Name, err)
			}
		} else if err := yaml.UnmarshalStrict(d, into); err != nil {
			t.Fatalf("%s/%s does not decode strictly into %T: %v", meta.Kind, meta.Metadata.Name, into, err)
		}
		key := meta.Kind + "/" + meta.Metadata.Name
		if _, dup := objs[key]; dup {
			t.Fatalf("%s rendered twice", key)
		}
		objs[key] = object{kind: meta.Kind, name: meta.Metadata.Name, namespace: meta.Metadata.Namespace, typed: into, raw: d}
	}
	return objs
}

// get returns the typed object Kind/name, failing the test when it was not rendered.
func get[T any](t *testing.T, objs map[string]object, key string) T {
	t.Helper()
	o, ok := objs[key]
	if !ok {
		t.Fatalf("%s not rendered; rendered: %v", key, keys(objs))
	}
	v, ok := o.typed.(T)
	if !ok {
		t.Fatalf("%s decoded as %T", key, o.typed)
	}
	return v
}

func keys(objs map[string]object) []string {
	var out []string
	for k := range objs {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestLintStrict(t *testing.T) {
	runHelm(t, "lint", "--strict", chartDir, "--kube-version", kubeVersion)
	args := []string{"lint", "--strict", chartDir, "--kube-version", kubeVersion}
	for _, s := range nonDefault {
		args = append(args, "--set", s)
	}
	runHelm(t, args...)
}

func TestSchemaRefusesBadValues(t *testing.T) {
	for _, bad := range []string{"webhook.failurePolicy=Sometimes", "webhook.certManagement=vault",
		"webhook.timeoutSeconds=31", "operator.logLevel=LOUD", "unknownTopLevel=1", "metrics.serviceMonitor.interval=soon"} {
		cmd := exec.Command(helm(t), "template", releaseName, chartDir, "--set", bad)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("--set %s rendered; want a schema error", bad)
			continue
		}
		if !strings.Contains(string(out), "values don't meet the specifications of the schema") {
			t.Errorf("--set %s: want a schema error, got: %s", bad, out)
		}
	}
}

func containerArgs(t *testing.T, d *appsv1.Deployment) (*corev1.Container, map[string]string) {
	t.Helper()
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("manager Deployment has %d containers, want 1", n)
	}
	c := &d.Spec.Template.Spec.Containers[0]
	args := map[string]string{}
	for _, a := range c.Args {
		k, v, _ := strings.Cut(a, "=")
		args[k] = v
	}
	return c, args
}

func TestRenderDefaults(t *testing.T) {
	objs := decodeAll(t, render(t))
	appVersion := chartAppVersion(t)
	image := "ghcr.io/syncedfolder/synced-folder:" + appVersion

	d := get[*appsv1.Deployment](t, objs, "Deployment/"+managerName)
	if d.Namespace != releaseNS {
		t.Errorf("Deployment namespace %q, want %q", d.Namespace, releaseNS)
	}
	c, args := containerArgs(t, d)
	if c.Image != image {
		t.Errorf("image %q, want %q (the chart's appVersion)", c.Image, image)
	}
	if !slices.Equal(c.Command, []string{"/manager"}) {
		t.Errorf("command %q, want [/manager]", c.Command)
	}
	for flag, want := range map[string]string{"--server-image": image, "--agent-image": image,
		"--webhook-cert-management": "self", "--metrics-bind-address": ":8443"} {
		if args[flag] != want {
			t.Errorf("manager flag %s=%q, want %q", flag, args[flag], want)
		}
	}
	if _, ok := args["--leader-elect"]; !ok {
		t.Error("manager runs without --leader-elect")
	}
	checkRestricted(t, &d.Spec.Template.Spec)
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("manager lacks the /healthz liveness and /readyz readiness probes")
	}
	if env := findEnv(c.Env, "POD_NAMESPACE"); env == nil || env.ValueFrom == nil || env.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("POD_NAMESPACE is not the pod's namespace from the downward API: %+v", env)
	}
	if !hasPort(c.Ports, "webhook-server", podinject.Port) {
		t.Errorf("no container port webhook-server %d: %+v", podinject.Port, c.Ports)
	}
	if !hasMount(c.VolumeMounts, podinject.CertDir) || !hasSecretVolume(d.Spec.Template.Spec.Volumes, webhookCert) {
		t.Error("the webhook Secret is not mounted at the cert dir")
	}
	if d.Spec.Template.Labels["control-plane"] != "controller-manager" {
		t.Error("manager pods lack control-plane: controller-manager (the servers' NetworkPolicy admits them by it)")
	}
	if sa := get[*corev1.ServiceAccount](t, objs, "ServiceAccount/"+d.Spec.Template.Spec.ServiceAccountName); sa.Namespace != releaseNS {
		t.Errorf("ServiceAccount namespace %q", sa.Namespace)
	}

	mwc := get[*admissionregistrationv1.MutatingWebhookConfiguration](t, objs, "MutatingWebhookConfiguration/"+webhookCfg)
	checkWebhook(t, mwc, admissionregistrationv1.Ignore, []string{"kube-system", releaseNS})
	if _, ok := mwc.Annotations["cert-manager.io/inject-ca-from"]; ok {
		t.Error("self-managed certificates but the cainjector annotation is set")
	}
	svc := get[*corev1.Service](t, objs, "Service/"+webhookSvc)
	if svc.Spec.Selector["control-plane"] != "controller-manager" || svc.Spec.Ports[0].TargetPort.StrVal != "webhook-server" {
		t.Errorf("webhook Service does not reach the manager's webhook port: %+v", svc.Spec)
	}
	s := get[*corev1.Secret](t, objs, "Secret/"+webhookCert)
	for k, v := range s.Data {
		if len(v) != 0 {
			t.Errorf("webhook Secret key %s is not empty: the rotator owns its data", k)
		}
	}

	crd := get[*apiextensionsv1.CustomResourceDefinition](t, objs, "CustomResourceDefinition/syncedfolders.sync.syncedfolder.io")
	if crd.Annotations["helm.sh/resource-policy"] != "keep" {
		t.Error("CRD lacks helm.sh/resource-policy: keep")
	}
	get[*rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding/synced-folder-manager-rolebinding")
	role := get[*rbacv1.Role](t, objs, "Role/synced-folder-leader-election-role")
	if role.Namespace != releaseNS {
		t.Errorf("leader-election Role in %q", role.Namespace)
	}
	get[*corev1.Service](t, objs, "Service/synced-folder-controller-manager-metrics-service")
	for _, absent := range []string{"ServiceMonitor/", "PodMonitor/", "ConfigMap/", "Certificate/", "Issuer/"} {
		for k := range objs {
			if strings.HasPrefix(k, absent) {
				t.Errorf("%s rendered with default values", k)
			}
		}
	}
}

func TestRenderNonDefaults(t *testing.T) {
	objs := decodeAll(t, render(t, nonDefault...))
	for k := range objs {
		if strings.HasPrefix(k, "CustomResourceDefinition/") {
			t.Errorf("%s rendered with crds.enabled=false", k)
		}
	}
	d := get[*appsv1.Deployment](t, objs, "Deployment/"+managerName)
	c, args := containerArgs(t, d)
	if want := "ghcr.io/syncedfolder/synced-folder:v9.9.9"; c.Image != want || args["--server-image"] != want {
		t.Errorf("image %q, server image %q; want %q", c.Image, args["--server-image"], want)
	}
	if args["--agent-image"] != "example.com/agent:1" {
		t.Errorf("--agent-image=%q", args["--agent-image"])
	}
	if args["--webhook-cert-management"] != "external" {
		t.Errorf("--webhook-cert-management=%q with cert-manager, want external", args["--webhook-cert-management"])
	}
	mwc := get[*admissionregistrationv1.MutatingWebhookConfiguration](t, objs, "MutatingWebhookConfiguration/"+webhookCfg)
	checkWebhook(t, mwc, admissionregistrationv1.Fail, []string{"kube-system", releaseNS, "infra"})
	if got, want := mwc.Annotations["cert-manager.io/inject-ca-from"], releaseNS+"/synced-folder-serving-cert"; got != want {
		t.Errorf("cainjector annotation %q, want %q", got, want)
	}
	if _, ok := objs["Secret/"+webhookCert]; ok {
		t.Error("the chart renders the webhook Secret although cert-manager issues it")
	}
	cert := get[*unstructured.Unstructured](t, objs, "Certificate/synced-folder-serving-cert")
	if v, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName"); v != webhookCert {
		t.Errorf("Certificate secretName %q, want %q", v, webhookCert)
	}
	dns, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	if !slices.Contains(dns, webhookSvc+"."+releaseNS+".svc") {
		t.Errorf("Certificate dnsNames %q lack the webhook Service", dns)
	}
	if v, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name"); v != "synced-folder-selfsigned-issuer" {
		t.Errorf("Certificate issuer %q", v)
	}
	get[*unstructured.Unstructured](t, objs, "Issuer/synced-folder-selfsigned-issuer")

	sm := get[*monitoringv1.ServiceMonitor](t, objs, "ServiceMonitor/synced-folder-controller-manager-metrics-monitor")
	if sm.Labels["release"] != "prometheus" || len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "https" {
		t.Errorf("ServiceMonitor: labels %v, endpoints %+v", sm.Labels, sm.Spec.Endpoints)
	}
	metricsSvc := get[*corev1.Service](t, objs, "Service/synced-folder-controller-manager-metrics-service")
	for k, v := range sm.Spec.Selector.MatchLabels {
		if metricsSvc.Labels[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s, the metrics Service has %q", k, v, metricsSvc.Labels[k])
		}
	}
	pm := get[*monitoringv1.PodMonitor](t, objs, "PodMonitor/synced-folder-agents")
	if !pm.Spec.NamespaceSelector.Any || pm.Spec.PodMetricsEndpoints[0].PortNumber == nil || *pm.Spec.PodMetricsEndpoints[0].PortNumber != 8477 {
		t.Errorf("PodMonitor does not scrape agents on 8477 in every namespace: %+v", pm.Spec)
	}

	var dashboards int
	for _, o := range objs {
		cm, ok := o.typed.(*corev1.ConfigMap)
		if !ok {
			continue
		}
		dashboards++
		if cm.Labels["grafana_dashboard"] != "1" || cm.Namespace != "monitoring" {
			t.Errorf("ConfigMap %s: labels %v namespace %q", cm.Name, cm.Labels, cm.Namespace)
		}
		for k, v := range cm.Data {
			want, err := os.ReadFile(filepath.Join(chartDir, "dashboards", k))
			if err != nil {
				t.Errorf("ConfigMap %s key %s is no file of dashboards/: %v", cm.Name, k, err)
			} else if strings.TrimSpace(v) != strings.TrimSpace(string(want)) {
				t.Errorf("ConfigMap %s key %s differs from dashboards/%s", cm.Name, k, k)
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(chartDir, "dashboards", "*.json"))
	if dashboards != len(files) || dashboards < 2 {
		t.Errorf("%d dashboard ConfigMaps for %d dashboard files (want at least 2)", dashboards, len(files))
	}
}

func TestWebhookDisabled(t *testing.T) {
	objs := decodeAll(t, render(t, "webhook.enabled=false"))
	for k := range objs {
		if strings.Contains(k, "webhook") || strings.HasPrefix(k, "MutatingWebhookConfiguration/") {
			t.Errorf("%s rendered with webhook.enabled=false", k)
		}
	}
	c, args := containerArgs(t, get[*appsv1.Deployment](t, objs, "Deployment/"+managerName))
	if env := findEnv(c.Env, "ENABLE_WEBHOOKS"); env == nil || env.Value != "false" {
		t.Errorf("ENABLE_WEBHOOKS %+v, want false", env)
	}
	if _, ok := args["--webhook-cert-management"]; ok {
		t.Error("--webhook-cert-management passed without a webhook")
	}
}

func checkWebhook(t *testing.T, mwc *admissionregistrationv1.MutatingWebhookConfiguration, policy admissionregistrationv1.FailurePolicyType, excluded []string) {
	t.Helper()
	if len(mwc.Webhooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(mwc.Webhooks))
	}
	w := mwc.Webhooks[0]
	if w.Name != webhookName {
		t.Errorf("webhook name %q, want %q", w.Name, webhookName)
	}
	if s := w.ClientConfig.Service; s == nil || s.Name != webhookSvc || s.Namespace != releaseNS || s.Path == nil || *s.Path != podinject.Path {
		t.Errorf("webhook clientConfig %+v", w.ClientConfig.Service)
	}
	if len(w.Rules) != 1 || !slices.Equal(w.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) ||
		!slices.Equal(w.Rules[0].Resources, []string{"pods"}) || !slices.Equal(w.Rules[0].APIGroups, []string{""}) {
		t.Errorf("webhook rules %+v, want CREATE pods only", w.Rules)
	}
	if w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNone {
		t.Error("sideEffects is not None")
	}
	if w.TimeoutSeconds == nil || *w.TimeoutSeconds != 5 {
		t.Errorf("timeoutSeconds %v, want 5", w.TimeoutSeconds)
	}
	if w.FailurePolicy == nil || *w.FailurePolicy != policy {
		t.Errorf("failurePolicy %v, want %s", w.FailurePolicy, policy)
	}
	if w.NamespaceSelector == nil || len(w.NamespaceSelector.MatchExpressions) != 1 {
		t.Fatalf("namespaceSelector %+v", w.NamespaceSelector)
	}
	e := w.NamespaceSelector.MatchExpressions[0]
	if e.Key != "kubernetes.io/metadata.name" || e.Operator != "NotIn" || !slices.Equal(e.Values, excluded) {
		t.Errorf("namespaceSelector %+v, want kubernetes.io/metadata.name NotIn %q", e, excluded)
	}
}

// checkRestricted checks the pod meets the restricted Pod Security Standard.
func checkRestricted(t *testing.T, spec *corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v is not restricted", psc)
	}
	for _, c := range spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("container %s securityContext %+v is not restricted", c.Name, sc)
		}
	}
}

func findEnv(env []corev1.EnvVar, name string) *corev1.EnvVar {
	for i := range env {
		if env[i].Name == name {
			return &env[i]
		}
	}
	return nil
}

func hasPort(ports []corev1.ContainerPort, name string, n int32) bool {
	return slices.ContainsFunc(ports, func(p corev1.ContainerPort) bool { return p.Name == name && p.ContainerPort == n })
}

func hasMount(mounts []corev1.VolumeMount, path string) bool {
	return slices.ContainsFunc(mounts, func(m corev1.VolumeMount) bool { return m.MountPath == path })
}

func hasSecretVolume(vols []corev1.Volume, secret string) bool {
	return slices.ContainsFunc(vols, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == secret })
}

func chartAppVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil || c.AppVersion == "" {
		t.Fatalf("Chart.yaml appVersion: %q %v", c.AppVersion, err)
	}
	return c.AppVersion
}
