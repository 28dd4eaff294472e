package chart

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)

// kustomizeTool returns the pinned kustomize of hack/tools.sh.
func kustomizeTool(t *testing.T) string {
	t.Helper()
	tool := exec.Command("bash", filepath.Join(root, "hack", "tools.sh"), "kustomize")
	var stderr bytes.Buffer
	tool.Stderr = &stderr
	out, err := tool.Output()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kustomize is required (CI=true): %v\n%s", err, stderr.String())
		}
		t.Skipf("kustomize unavailable: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// kustomizeBuild renders a kustomization of this repository (dir relative to its root).
func kustomizeBuild(t *testing.T, dir string) []byte {
	t.Helper()
	return kustomizeBuildDir(t, filepath.Join(root, dir))
}

// kustomizeBuildDir renders the kustomization in dir.
func kustomizeBuildDir(t *testing.T, dir string) []byte {
	t.Helper()
	cmd := exec.Command(kustomizeTool(t), "build", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("kustomize build %s: %v\n%s", dir, err, stderr.String())
	}
	return b
}

// managerFlags reads the flags that shape the install, with the manager's defaults for
// absent ones, so `--leader-elect` and `--leader-elect=true` compare equal.
func managerFlags(c *corev1.Container) map[string]string {
	got := map[string]string{"--leader-elect": "false", "--health-probe-bind-address": ":8081",
		"--metrics-bind-address": "0", "--webhook-cert-management": "self"}
	for _, a := range c.Args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			v = "true"
		}
		if _, tracked := got[k]; tracked {
			got[k] = v
		}
	}
	env := findEnv(c.Env, "ENABLE_WEBHOOKS")
	got["ENABLE_WEBHOOKS"] = "true"
	if env != nil {
		got["ENABLE_WEBHOOKS"] = env.Value
	}
	return got
}

func portSet(ports []corev1.ContainerPort) []string {
	var out []string
	for _, p := range ports {
		out = append(out, fmt.Sprintf("%s=%d", p.Name, p.ContainerPort))
	}
	slices.Sort(out)
	return out
}

// TestKustomizeInstallMatchesChart checks that config/default (kubectl users) installs what
// the chart installs with default values: the same objects by kind and name, the same RBAC,
// the same manager command, flags, ports and mounts, the same webhook.
func TestKustomizeInstallMatchesChart(t *testing.T) {
	chart := decodeAll(t, render(t))
	kust := decodeAll(t, kustomizeBuild(t, "config/default"))

	for key, o := range chart {
		if o.kind == "Secret" {
			continue // the chart's empty webhook Secret; kustomize users get it from the rotator
		}
		k, ok := kust[key]
		if !ok {
			t.Errorf("config/default lacks %s, which the chart installs", key)
			continue
		}
		if o.namespace != k.namespace {
			t.Errorf("%s: namespace %q in the chart, %q in config/default", key, o.namespace, k.namespace)
		}
		switch c := o.typed.(type) {
		case *rbacv1.ClusterRole:
			kc := k.typed.(*rbacv1.ClusterRole)
			if !reflect.DeepEqual(flatten(c.Rules), flatten(kc.Rules)) {
				t.Errorf("%s: rules differ\nchart:     %v\nconfig/default: %v", key, diffRules(flatten(c.Rules), flatten(kc.Rules)), diffRules(flatten(kc.Rules), flatten(c.Rules)))
			}
			if c.Labels["rbac.authorization.k8s.io/aggregate-to-view"] != kc.Labels["rbac.authorization.k8s.io/aggregate-to-view"] ||
				c.Labels["rbac.authorization.k8s.io/aggregate-to-edit"] != kc.Labels["rbac.authorization.k8s.io/aggregate-to-edit"] {
				t.Errorf("%s: aggregation labels differ", key)
			}
		case *rbacv1.Role:
			kr := k.typed.(*rbacv1.Role)
			if !reflect.DeepEqual(flatten(c.Rules), flatten(kr.Rules)) {
				t.Errorf("%s: rules differ", key)
			}
		case *rbacv1.ClusterRoleBinding:
			kb := k.typed.(*rbacv1.ClusterRoleBinding)
			if c.RoleRef != kb.RoleRef || !reflect.DeepEqual(c.Subjects, kb.Subjects) {
				t.Errorf("%s: roleRef/subjects differ: %+v %+v vs %+v %+v", key, c.RoleRef, c.Subjects, kb.RoleRef, kb.Subjects)
			}
		case *rbacv1.RoleBinding:
			kb := k.typed.(*rbacv1.RoleBinding)
			if c.RoleRef != kb.RoleRef || !reflect.DeepEqual(c.Subjects, kb.Subjects) {
				t.Errorf("%s: roleRef/subjects differ", key)
			}
		case *corev1.Service:
			ks := k.typed.(*corev1.Service)
			if !reflect.DeepEqual(c.Spec.Selector, ks.Spec.Selector) || !reflect.DeepEqual(c.Spec.Ports, ks.Spec.Ports) {
				t.Errorf("%s: selector/ports differ: %v %+v vs %v %+v", key, c.Spec.Selector, c.Spec.Ports, ks.Spec.Selector, ks.Spec.Ports)
			}
		case *appsv1.Deployment:
			compareDeployments(t, key, c, k.typed.(*appsv1.Deployment))
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			kw := k.typed.(*admissionregistrationv1.MutatingWebhookConfiguration)
			if len(kw.Webhooks) != 1 {
				t.Errorf("%s: %d webhooks in config/default", key, len(kw.Webhooks))
				continue
			}
			// The release namespace of the chart is config/default's namespace.
			checkWebhook(t, kw, admissionregistrationv1.Ignore, []string{"kube-system", releaseNS})
		}
	}
}

func compareDeployments(t *testing.T, key string, c, k *appsv1.Deployment) {
	t.Helper()
	if !reflect.DeepEqual(c.Spec.Selector, k.Spec.Selector) {
		t.Errorf("%s: selector %v vs %v", key, c.Spec.Selector, k.Spec.Selector)
	}
	checkRestricted(t, &k.Spec.Template.Spec)
	if k.Spec.Template.Spec.ServiceAccountName != c.Spec.Template.Spec.ServiceAccountName {
		t.Errorf("%s: serviceAccountName %q vs %q", key, c.Spec.Template.Spec.ServiceAccountName, k.Spec.Template.Spec.ServiceAccountName)
	}
	if len(k.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%s: %d containers in config/default", key, len(k.Spec.Template.Spec.Containers))
	}
	cc, kc := &c.Spec.Template.Spec.Containers[0], &k.Spec.Template.Spec.Containers[0]
	if !slices.Equal(cc.Command, kc.Command) {
		t.Errorf("%s: command %q in the chart, %q in config/default", key, cc.Command, kc.Command)
	}
	if cf, kf := managerFlags(cc), managerFlags(kc); !reflect.DeepEqual(cf, kf) {
		t.Errorf("%s: manager settings differ\nchart:          %v\nconfig/default: %v", key, cf, kf)
	}
	if env := findEnv(kc.Env, "POD_NAMESPACE"); env == nil || env.ValueFrom == nil || env.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("%s: config/default lacks POD_NAMESPACE from the downward API", key)
	}
	for _, p := range cc.Ports {
		if p.Name != "health" && !hasPort(kc.Ports, p.Name, p.ContainerPort) {
			t.Errorf("%s: config/default lacks container port %s %d; has %v", key, p.Name, p.ContainerPort, portSet(kc.Ports))
		}
	}
	for _, m := range cc.VolumeMounts {
		if m.MountPath != "/tmp" && !hasMount(kc.VolumeMounts, m.MountPath) {
			t.Errorf("%s: config/default does not mount %s", key, m.MountPath)
		}
	}
	if kc.LivenessProbe == nil || kc.ReadinessProbe == nil || kc.LivenessProbe.HTTPGet.Path != cc.LivenessProbe.HTTPGet.Path ||
		kc.ReadinessProbe.HTTPGet.Path != cc.ReadinessProbe.HTTPGet.Path {
		t.Errorf("%s: probes differ", key)
	}
	for _, flag := range []string{"--server-image=", "--agent-image="} {
		if !slices.Contains(cc.Args, flag+cc.Image) {
			t.Errorf("%s: the chart's manager lacks %s%s (its own image)", key, flag, cc.Image)
		}
	}
	checkImagesFollowManager(t, key, kc)
	if k.Spec.Template.Labels["control-plane"] != "controller-manager" {
		t.Errorf("%s: config/default's pods lack control-plane: controller-manager", key)
	}
}

// checkImagesFollowManager checks that the kustomize install runs the server and the agent
// from the manager's own image.
func checkImagesFollowManager(t *testing.T, key string, c *corev1.Container) {
	t.Helper()
	for _, name := range []string{"SERVER_IMAGE", "AGENT_IMAGE"} {
		if env := findEnv(c.Env, name); env == nil || env.Value != c.Image {
			t.Errorf("%s: %s is %+v, want the manager's image %q", key, name, env, c.Image)
		}
	}
}

// TestKustomizeDeployImageReachesServerAndAgent does what `make deploy IMG=...` does (kustomize
// edit set image, in a copy of config/) and checks the one image reaches the manager, the
// server and the agent: otherwise the server would run a default image nobody loaded.
func TestKustomizeDeployImageReachesServerAndAgent(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-r", filepath.Join(root, "config"), dir).CombinedOutput(); err != nil {
		t.Fatalf("copy config/: %v\n%s", err, out)
	}
	const img = "registry.invalid/team/synced-folder:v9.9.9"
	edit := exec.Command(kustomizeTool(t), "edit", "set", "image", "controller="+img)
	edit.Dir = filepath.Join(dir, "config", "manager")
	if out, err := edit.CombinedOutput(); err != nil {
		t.Fatalf("kustomize edit set image: %v\n%s", err, out)
	}
	objs := decodeAll(t, kustomizeBuildDir(t, filepath.Join(dir, "config", "default")))
	var found bool
	for key, o := range objs {
		d, ok := o.typed.(*appsv1.Deployment)
		if !ok {
			continue
		}
		found = true
		c := &d.Spec.Template.Spec.Containers[0]
		if c.Image != img {
			t.Errorf("%s: manager image %q, want %q", key, c.Image, img)
		}
		checkImagesFollowManager(t, key, c)
	}
	if !found {
		t.Fatal("config/default renders no Deployment")
	}
}

// TestKustomizePrometheusMatchesChart checks config/prometheus scrapes the manager as the
// chart's ServiceMonitor does.
func TestKustomizePrometheusMatchesChart(t *testing.T) {
	chart := decodeAll(t, render(t, "metrics.serviceMonitor.enabled=true"))
	kust := decodeAll(t, kustomizeBuild(t, "config/prometheus"))
	c := get[*monitoringv1.ServiceMonitor](t, chart, "ServiceMonitor/synced-folder-controller-manager-metrics-monitor")
	k := get[*monitoringv1.ServiceMonitor](t, kust, "ServiceMonitor/controller-manager-metrics-monitor")
	if !reflect.DeepEqual(c.Spec, k.Spec) {
		cy, _ := yaml.Marshal(c.Spec)
		ky, _ := yaml.Marshal(k.Spec)
		t.Errorf("ServiceMonitor specs differ\nchart:\n%s\nconfig/prometheus:\n%s", cy, ky)
	}
}
