package podinject

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
	"github.com/syncedfolder/synced-folder/controllers"
	"github.com/syncedfolder/synced-folder/internal/envtestassets"
)

// eventually polls check until it returns nil, failing with its last error after timeout.
func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAdmissionPath runs the webhook behind a real kube-apiserver, registered from
// config/webhook/manifests.yaml (failurePolicy, rules and namespaceSelector as shipped), with
// the SyncedFolder reconciler beside it for the safety net.
func TestAdmissionPath(t *testing.T) {
	ctrl.SetLogger(logr.Discard())
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: envtestassets.DirOrSkip(t),
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			Paths: []string{filepath.Join("..", "..", "config", "webhook", "manifests.yaml")},
		},
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop envtest: %v", err)
		}
	})
	if n := len(env.WebhookInstallOptions.MutatingWebhooks); n != 1 {
		t.Fatalf("config/webhook installs %d mutating webhook configurations, want 1", n)
	}

	// The reconciler (safety net) in a manager of its own, and the webhook server apart from
	// it, so that the webhook can be stopped while the reconciler keeps running.
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 controllers.NewScheme(),
		Cache:                  controllers.CacheOptions(),
		Client:                 controllers.ClientOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &controllers.SyncedFolderReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Scheme: mgr.GetScheme(),
		Recorder: mgr.GetEventRecorder("syncedfolder-controller"), Discovery: disc,
		Settings: controllers.Settings{ServerImage: "example.org/sync:test", AgentImage: "example.org/sync:test", ClusterDomain: "cluster.local"},
	}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-mgrDone; err != nil {
			t.Errorf("manager: %v", err)
		}
	})

	o := env.WebhookInstallOptions
	srv := webhook.NewServer(webhook.Options{Host: o.LocalServingHost, Port: o.LocalServingPort, CertDir: o.LocalServingCertDir})
	injector := &Injector{Reader: mgr.GetAPIReader(), Decoder: admission.NewDecoder(mgr.GetScheme()),
		Recorder: mgr.GetEventRecorder("syncedfolder-webhook"), Config: Config{AgentImage: "example.org/sync:test", OperatorNamespace: "synced-folder-system"}}
	srv.Register(Path, &webhook.Admission{Handler: injector})
	whCtx, stopWebhook := context.WithCancel(ctx)
	whDone := make(chan error, 1)
	go func() { whDone <- srv.Start(whCtx) }()
	eventually(t, 10*time.Second, func() error { return srv.StartedChecker()(&http.Request{}) })

	c, err := client.New(cfg, client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	const ns = "apps"
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}},
		&syncv1.SyncedFolder{ObjectMeta: metav1.ObjectMeta{Name: "shared", Namespace: ns},
			Spec: syncv1.SyncedFolderSpec{Storage: syncv1.StorageSpec{Size: resource.MustParse("1Gi")}}},
	} {
		if err := c.Create(bg, obj); err != nil {
			t.Fatalf("create %T: %v", obj, err)
		}
	}
	newPod := func(name string, ann map[string]string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: ann},
			Spec: corev1.PodSpec{
				AutomountServiceAccountToken: ptr.To(false),
				Containers: []corev1.Container{{Name: "app", Image: "example.org/app:1",
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
				Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			},
		}
	}
	optIn := map[string]string{syncv1.AnnotationFolder: "shared", syncv1.AnnotationVolume: "data"}
	create := func(t *testing.T, p *corev1.Pod) *corev1.Pod {
		t.Helper()
		if err := c.Create(bg, p); err != nil {
			t.Fatalf("create pod %s: %v", p.Name, err)
		}
		got := &corev1.Pod{}
		if err := c.Get(bg, client.ObjectKeyFromObject(p), got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	agents := func(p *corev1.Pod) int {
		n := 0
		for _, ic := range p.Spec.InitContainers {
			if ic.Name == AgentContainerName {
				n++
			}
		}
		return n
	}

	var injected *corev1.Pod
	t.Run("annotated pod gets the sidecar", func(t *testing.T) {
		injected = create(t, newPod("web", optIn))
		if agents(injected) != 1 || injected.Spec.InitContainers[0].Name != AgentContainerName {
			t.Fatalf("init containers %v, want the agent first and once", containerNames(injected.Spec.InitContainers))
		}
		ic := injected.Spec.InitContainers[0]
		if ic.RestartPolicy == nil || *ic.RestartPolicy != corev1.ContainerRestartPolicyAlways || ic.StartupProbe == nil {
			t.Errorf("agent is not a native sidecar with a startup probe: %+v", ic)
		}
		if injected.Labels[syncv1.LabelAgentFor] != "shared" || injected.Annotations[syncv1.AnnotationInjected] != "shared" {
			t.Errorf("labels %v annotations %v", injected.Labels, injected.Annotations)
		}
	})
	t.Run("second pass adds no second agent", func(t *testing.T) {
		if injected == nil {
			t.Fatal("no injected pod: the previous subtest failed")
		}
		// Through the handler: the stored, injected pod as a new admission request.
		raw, err := json.Marshal(injected)
		if err != nil {
			t.Fatal(err)
		}
		resp := injector.Handle(bg, admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			Operation: admissionv1.Create, Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Namespace: ns, Object: runtime.RawExtension{Raw: raw},
		}})
		if !resp.Allowed || len(resp.Patches) != 0 {
			t.Fatalf("second pass: allowed=%v patches=%v", resp.Allowed, resp.Patches)
		}
		// Through the API server: a pod created with the agent already in it.
		again := injected.DeepCopy()
		again.ObjectMeta = metav1.ObjectMeta{Name: "web-again", Namespace: ns, Annotations: injected.Annotations, Labels: injected.Labels}
		got := create(t, again)
		if agents(got) != 1 || len(got.Spec.Volumes) != len(injected.Spec.Volumes) {
			t.Fatalf("init containers %v, %d volumes (want 1 agent, %d volumes)", containerNames(got.Spec.InitContainers), len(got.Spec.Volumes), len(injected.Spec.Volumes))
		}
	})
	t.Run("unannotated pod is untouched", func(t *testing.T) {
		got := create(t, newPod("plain", nil))
		if len(got.Spec.InitContainers) != 0 || len(got.Annotations) != 0 || got.Labels[syncv1.LabelAgentFor] != "" || len(got.Spec.Volumes) != 1 {
			t.Fatalf("unannotated pod changed: init %v annotations %v labels %v volumes %d",
				containerNames(got.Spec.InitContainers), got.Annotations, got.Labels, len(got.Spec.Volumes))
		}
	})
	t.Run("unknown folder is admitted with the reason", func(t *testing.T) {
		got := create(t, newPod("lost", map[string]string{syncv1.AnnotationFolder: "nope", syncv1.AnnotationVolume: "data"}))
		if agents(got) != 0 || !strings.HasPrefix(got.Annotations[syncv1.AnnotationInjectionStatus], ReasonFolderNotFound+":") {
			t.Fatalf("init %v annotations %v", containerNames(got.Spec.InitContainers), got.Annotations)
		}
		eventually(t, 10*time.Second, func() error { return findEvent(bg, c, ns, ReasonFolderNotFound, "lost") })
	})
	t.Run("webhook down: pod created unchanged and reported", func(t *testing.T) {
		stopWebhook()
		if err := <-whDone; err != nil {
			t.Fatalf("webhook server: %v", err)
		}
		got := create(t, newPod("missed", optIn))
		if agents(got) != 0 || got.Annotations[syncv1.AnnotationInjected] != "" {
			t.Fatalf("pod injected although the webhook is down: %v", containerNames(got.Spec.InitContainers))
		}
		eventually(t, 30*time.Second, func() error {
			f := &syncv1.SyncedFolder{}
			if err := c.Get(bg, client.ObjectKey{Namespace: ns, Name: "shared"}, f); err != nil {
				return err
			}
			if f.Status.UninjectedPodCount != 1 || !slices.Equal(f.Status.UninjectedPods, []string{"missed"}) {
				return fmt.Errorf("status reports %d uninjected pods %v, want [missed]", f.Status.UninjectedPodCount, f.Status.UninjectedPods)
			}
			return nil
		})
		eventually(t, 10*time.Second, func() error { return findEvent(bg, c, ns, "PodsNotInjected", "missed") })
	})
	t.Run("certificate rotator fills the Secret and the caBundle", func(t *testing.T) {
		testCertRotator(t, cfg, c)
	})
}

// testCertRotator runs AddCertRotator against the API server: the rotator fills the empty
// webhook Secret and patches the CA into the webhook configuration; ready closes once the
// certificate is "mounted" (the test plays the kubelet and writes the Secret's files).
func testCertRotator(t *testing.T, cfg *rest.Config, c client.Client) {
	bg := context.Background()
	const ns = "synced-folder-system"
	sideEffects := admissionregistrationv1.SideEffectClassNone
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: CertSecretName, Namespace: ns}},
		// Its rule matches nothing that exists: only the caBundle matters here.
		&admissionregistrationv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: WebhookConfigurationName},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{
				Name:                    "mpod.sync.syncedfolder.io",
				AdmissionReviewVersions: []string{"v1"},
				SideEffects:             &sideEffects,
				ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
					Namespace: ns, Name: ServiceName, Path: ptr.To(Path),
				}},
				Rules: []admissionregistrationv1.RuleWithOperations{{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{"example.org"}, APIVersions: []string{"v1"}, Resources: []string{"nothings"}},
				}},
			}},
		},
	} {
		if err := c.Create(bg, obj); err != nil {
			t.Fatalf("create %T: %v", obj, err)
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: controllers.NewScheme(), Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	ready := make(chan struct{})
	if err := AddCertRotator(mgr, "", certDir, ready); err == nil {
		t.Fatal("AddCertRotator without a namespace: no error")
	}
	if err := AddCertRotator(mgr, ns, certDir, ready); err != nil {
		t.Fatal(err)
	}
	check := ReadyCheck(ready, func() healthz.Checker { return healthz.Ping })
	if err := check(&http.Request{}); err == nil {
		t.Fatal("ready check passes before the certificates exist")
	}
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	secret := &corev1.Secret{}
	eventually(t, 30*time.Second, func() error {
		if err := c.Get(bg, client.ObjectKey{Namespace: ns, Name: CertSecretName}, secret); err != nil {
			return err
		}
		if len(secret.Data["tls.crt"]) == 0 || len(secret.Data["tls.key"]) == 0 {
			return fmt.Errorf("secret keys %v", slices.Collect(maps.Keys(secret.Data)))
		}
		return nil
	})
	for _, k := range []string{"tls.crt", "tls.key"} {
		if err := os.WriteFile(filepath.Join(certDir, k), secret.Data[k], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 60*time.Second, func() error { return check(&http.Request{}) })
	wh := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Get(bg, client.ObjectKey{Name: WebhookConfigurationName}, wh); err != nil {
		t.Fatal(err)
	}
	if ca := wh.Webhooks[0].ClientConfig.CABundle; len(ca) == 0 || !bytes.Equal(ca, secret.Data["ca.crt"]) {
		t.Fatalf("caBundle (%d bytes) is not the Secret's ca.crt (%d bytes)", len(ca), len(secret.Data["ca.crt"]))
	}
	block, _ := pem.Decode(secret.Data["tls.crt"])
	if block == nil {
		t.Fatal("tls.crt is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.VerifyHostname(ServiceName + "." + ns + ".svc"); err != nil {
		t.Fatalf("serving certificate: %v", err)
	}
}

// findEvent looks for an event of reason in ns whose note mentions word.
func findEvent(ctx context.Context, c client.Client, ns, reason, word string) error {
	var list eventsv1.EventList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return err
	}
	var seen []string
	for _, e := range list.Items {
		if e.Reason == reason && strings.Contains(e.Note, word) {
			return nil
		}
		seen = append(seen, e.Reason+": "+e.Note)
	}
	return errors.New("no " + reason + " event about " + word + " among " + strings.Join(seen, "; "))
}

func containerNames(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}
