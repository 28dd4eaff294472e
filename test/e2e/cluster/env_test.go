//go:build e2e

package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// env is what hack/e2e.sh hands the suite.
type env struct {
	kubeconfig, kubectl, helm   string
	chart, serviceMonitorCRD    string
	operatorNS                  string
	imageRepo, imageTag         string
	imageID                     string // digest of the image tarball: rolls the operator when it changes
	probeImage                  string
	prometheus                  string
	artifacts                   string
	pgHost, pgPort, pgPassword  string
	ci                          bool
	c                           client.Client
	cs                          *kubernetes.Clientset
	ctx                         context.Context
	cancel                      context.CancelFunc
	testStart                   time.Time
	operatorDeployment, release string
}

// newEnv reads the environment; without a cluster the suite is skipped, except in CI.
func newEnv(t *testing.T) *env {
	t.Helper()
	get := func(k string) string { return os.Getenv(k) }
	e := &env{
		kubeconfig: get("KUBECONFIG"), kubectl: get("KUBECTL"), helm: get("HELM"),
		chart: get("E2E_CHART"), serviceMonitorCRD: get("E2E_SERVICEMONITOR_CRD"),
		operatorNS: get("E2E_OPERATOR_NS"), imageRepo: get("IMG_REPO"), imageTag: get("IMG_TAG"),
		imageID:    get("IMG_ID"),
		probeImage: get("PROBE_IMAGE"), prometheus: get("PROMETHEUS"), artifacts: get("E2E_ARTIFACTS"),
		pgHost: get("E2E_PG_HOST"), pgPort: get("E2E_PG_PORT"), pgPassword: get("E2E_PG_PASSWORD"),
		ci:                 get("CI") == "true",
		operatorDeployment: "synced-folder-controller-manager",
		release:            "synced-folder",
	}
	var missing []string
	for k, v := range map[string]string{
		"KUBECONFIG": e.kubeconfig, "KUBECTL": e.kubectl, "HELM": e.helm, "E2E_CHART": e.chart,
		"E2E_SERVICEMONITOR_CRD": e.serviceMonitorCRD, "E2E_OPERATOR_NS": e.operatorNS,
		"IMG_REPO": e.imageRepo, "IMG_TAG": e.imageTag, "PROBE_IMAGE": e.probeImage,
	} {
		if v == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		if e.ci {
			t.Fatalf("missing %s: run the suite through hack/e2e.sh (make e2e)", strings.Join(missing, ", "))
		}
		t.Skipf("no local cluster (missing %s): run make e2e", strings.Join(missing, ", "))
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", e.kubeconfig)
	if err != nil {
		t.Fatalf("load kubeconfig %q: %v", e.kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(syncv1.AddToScheme(scheme))
	utilruntime.Must(monitoringv1.AddToScheme(scheme))
	if e.c, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		t.Fatalf("create client: %v", err)
	}
	if e.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatalf("create clientset: %v", err)
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	t.Cleanup(e.cancel)
	e.testStart = time.Now()
	return e
}

// step runs one named check and logs how long it took; a failed step ends the suite, since
// every later step builds on the state the earlier ones made.
func (e *env) step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	start := time.Now()
	ok := t.Run(name, f)
	t.Logf("step %q: %s after %.1fs (suite at %.1fs)", name, map[bool]string{true: "passed", false: "FAILED"}[ok],
		time.Since(start).Seconds(), time.Since(e.testStart).Seconds())
	if !ok {
		t.FailNow()
	}
}

// poll calls f every interval until it reports done, failing the test with f's last error
// after timeout.
func poll(t *testing.T, timeout time.Duration, what string, f func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		done, err := f()
		if done && err == nil {
			return
		}
		last = err
		if time.Now().After(deadline) {
			if last == nil {
				last = errors.New("condition not met")
			}
			t.Fatalf("%s: not within %s: %v", what, timeout, last)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// run runs a command and returns its stdout; the error carries stderr.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// kubectl runs the cluster's kubectl with a bounded timeout.
func (e *env) kubectlRun(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(e.ctx, 60*time.Second)
	defer cancel()
	return run(ctx, e.kubectl, append([]string{"--kubeconfig", e.kubeconfig}, args...)...)
}

// probe runs /probe ARGS in the app container of pod ns/name.
func (e *env) probe(ns, pod string, args ...string) (string, error) {
	return e.kubectlRun(append([]string{"-n", ns, "exec", pod, "-c", "app", "--", "/probe"}, args...)...)
}

// ls lists the synced directory /data of a pod.
func (e *env) ls(ns, pod string) ([]string, error) {
	out, err := e.probe(ns, pod, "ls", "/data")
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// waitFile waits until pod's /data/name holds want.
func (e *env) waitFile(t *testing.T, ns, pod, name, want string, timeout time.Duration) {
	t.Helper()
	poll(t, timeout, fmt.Sprintf("%s/%s sees %s = %q", ns, pod, name, want), func() (bool, error) {
		got, err := e.probe(ns, pod, "cat", "/data/"+name)
		if err != nil {
			return false, err
		}
		if got != want {
			return false, fmt.Errorf("content %q", got)
		}
		return true, nil
	})
}

// waitGone waits until pod's /data has no entry name.
func (e *env) waitGone(t *testing.T, ns, pod, name string, timeout time.Duration) {
	t.Helper()
	poll(t, timeout, fmt.Sprintf("%s/%s loses %s", ns, pod, name), func() (bool, error) {
		names, err := e.ls(ns, pod)
		if err != nil {
			return false, err
		}
		for _, n := range names {
			if n == name {
				return false, fmt.Errorf("still listed: %v", names)
			}
		}
		return true, nil
	})
}

// folderReady reports whether a SyncedFolder's Ready condition is True for its generation.
func (e *env) folderReady(ns, name string) (bool, error) {
	var f syncv1.SyncedFolder
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: name}, &f); err != nil {
		return false, err
	}
	c := meta.FindStatusCondition(f.Status.Conditions, syncv1.ConditionReady)
	if c == nil {
		return false, fmt.Errorf("no Ready condition yet (conditions %v)", f.Status.Conditions)
	}
	if c.Status != metav1.ConditionTrue || c.ObservedGeneration != f.Generation {
		return false, fmt.Errorf("Ready=%s (%s: %s), generation %d observed %d", c.Status, c.Reason, c.Message, f.Generation, c.ObservedGeneration)
	}
	return true, nil
}

// podReady waits for pod ns/name to be Ready and returns it.
func (e *env) podReady(t *testing.T, ns, name string, timeout time.Duration) *corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	poll(t, timeout, "pod "+ns+"/"+name+" Ready", func() (bool, error) {
		if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: name}, &pod); err != nil {
			return false, err
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, fmt.Errorf("phase %s, %s", pod.Status.Phase, containerStates(&pod))
	})
	return &pod
}

// containerStates summarizes a pod's container states for error messages.
func containerStates(p *corev1.Pod) string {
	var parts []string
	add := func(ss []corev1.ContainerStatus) {
		for _, s := range ss {
			st := "unknown"
			switch {
			case s.State.Running != nil:
				st = "running"
			case s.State.Waiting != nil:
				st = "waiting " + s.State.Waiting.Reason + " " + s.State.Waiting.Message
			case s.State.Terminated != nil:
				st = fmt.Sprintf("terminated %s (%d) %s", s.State.Terminated.Reason, s.State.Terminated.ExitCode, s.State.Terminated.Message)
			}
			parts = append(parts, fmt.Sprintf("%s: %s ready=%v started=%v restarts=%d", s.Name, st, s.Ready, ptr.Deref(s.Started, false), s.RestartCount))
		}
	}
	add(p.Status.InitContainerStatuses)
	add(p.Status.ContainerStatuses)
	return strings.Join(parts, "; ")
}

// containerLog returns the log of one container of a pod.
func (e *env) containerLog(ns, pod, container string) (string, error) {
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	b, err := e.cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("read log of %s/%s[%s]: %w", ns, pod, container, err)
	}
	return string(b), nil
}

// createNamespace creates a fresh namespace for the suite.
func (e *env) createNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := e.c.Create(e.ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %q: %v", name, err)
	}
}

// syncedPod is an app pod that opts into folder's agent on its volume "shared" (/data in the
// app container), running as the image's nonroot user so that the app and the agent share
// file ownership. The app lists /data once at start (its log shows what the first sync
// brought), then sleeps. shareProcessNamespace lets the app pause its agent (probe signal).
func (e *env) syncedPod(ns, name, folder, serviceAccount string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{
			syncv1.AnnotationFolder: folder,
			syncv1.AnnotationVolume: "shared",
		}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            serviceAccount,
			TerminationGracePeriodSeconds: ptr.To(int64(2)),
			ShareProcessNamespace:         ptr.To(true),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsUser: ptr.To(int64(65532)), RunAsGroup: ptr.To(int64(65532)), FSGroup: ptr.To(int64(65532)),
				RunAsNonRoot: ptr.To(true),
			},
			Containers: []corev1.Container{{
				Name:            "app",
				Image:           e.probeImage,
				ImagePullPolicy: corev1.PullNever,
				Command:         []string{"/probe", "sleep", "/data"},
				VolumeMounts:    []corev1.VolumeMount{{Name: "shared", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
}

// serviceAccount creates a ServiceAccount.
func (e *env) serviceAccount(t *testing.T, ns, name string) {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	if err := e.c.Create(e.ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create service account %s/%s: %v", ns, name, err)
	}
}
