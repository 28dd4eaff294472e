package podinject

import (
	"context"
	"encoding/json"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// Path is where the webhook server serves the pod-mutating webhook.
const Path = "/mutate--v1-pod"

// +kubebuilder:rbac:groups=sync.syncedfolder.io,resources=syncedfolders,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Injector is the pod-mutating admission handler.
type Injector struct {
	// Reader reads SyncedFolders (the manager's cache).
	Reader client.Reader
	// Decoder decodes the admitted pod.
	Decoder admission.Decoder
	// Recorder records why an opted-in pod got no agent.
	Recorder events.EventRecorder
	// Config holds the default agent image and the operator's namespace.
	Config Config
}

// NewWebhook returns the admission webhook to register at Path.
func NewWebhook(reader client.Reader, scheme *runtime.Scheme, recorder events.EventRecorder, cfg Config) *webhook.Admission {
	return &webhook.Admission{Handler: &Injector{Reader: reader, Decoder: admission.NewDecoder(scheme), Recorder: recorder, Config: cfg}}
}

// Handle admits every pod: it adds the agent to an opted-in pod with a usable target, marks
// an opted-in pod without one with the reason, and leaves everything else alone. It never
// denies: a pod that cannot get an agent still runs, and the reconciler reports it.
func (i *Injector) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return admission.Allowed("not a pod creation")
	}
	pod := &corev1.Pod{}
	if err := i.Decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	name := pod.Annotations[syncv1.AnnotationFolder]
	if name == "" {
		return admission.Allowed("not opted in")
	}
	var folder *syncv1.SyncedFolder
	f := &syncv1.SyncedFolder{}
	err := i.Reader.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: name}, f)
	if err == nil {
		folder = f
	} else if !apierrors.IsNotFound(err) {
		log.FromContext(ctx).Error(err, "read SyncedFolder", "namespace", pod.Namespace, "name", name)
	}
	mutated, d := mutate(pod, folder, i.Config, err)
	if mutated == pod {
		return admission.Allowed("")
	}
	return i.respond(ctx, req, pod, mutated, d, folder)
}

// mutate is the webhook's answer for pod given its folder (nil if none, readErr if it could
// not be read): the pod with the agent, the pod with the reason it got none, or pod itself
// when it is none of the webhook's business.
func mutate(pod *corev1.Pod, folder *syncv1.SyncedFolder, cfg Config, readErr error) (*corev1.Pod, Decision) {
	d := shouldInject(pod, folder, cfg.OperatorNamespace)
	if readErr != nil && !apierrors.IsNotFound(readErr) && d.Reason == ReasonFolderNotFound {
		// Denying would stop the app for a cache hiccup; the pod goes in without an agent,
		// says why, and the reconciler's safety net reports it on the folder.
		d = refuse(ReasonFolderUnreadable, "read SyncedFolder %q: %v", pod.Annotations[syncv1.AnnotationFolder], readErr)
	}
	switch {
	case d.Inject:
		return inject(pod, folder, d.Target, cfg), d
	case d.Reason != "":
		return refused(pod, d), d
	default:
		return pod, d
	}
}

// respond patches pod into mutated and records an event for a refusal.
func (i *Injector) respond(ctx context.Context, req admission.Request, pod, mutated *corev1.Pod, d Decision, folder *syncv1.SyncedFolder) admission.Response {
	logger := log.FromContext(ctx).WithValues("namespace", pod.Namespace, "pod", podName(pod), "folder", pod.Annotations[syncv1.AnnotationFolder])
	if d.Inject {
		logger.V(1).Info("injecting the sync agent", "volume", d.Target.Volume, "subPath", d.Target.SubPath, "mode", d.Target.Mode)
	} else {
		logger.Info("pod admitted without the sync agent", "reason", d.Reason, "message", d.Message)
		i.recordRefusal(pod, folder, d)
	}
	raw, err := json.Marshal(mutated)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, raw)
}

// recordRefusal emits a Warning event about a refused pod. A pod created from generateName
// has no name yet at admission, so the event goes to its controlling owner (the ReplicaSet,
// Job, …) instead, and failing that to the folder; an event about an unnamed object would be
// rejected.
func (i *Injector) recordRefusal(pod *corev1.Pod, folder *syncv1.SyncedFolder, d Decision) {
	if i.Recorder == nil {
		return
	}
	var related runtime.Object
	if folder != nil {
		related = folder
	}
	var regarding runtime.Object
	switch owner := controllerOf(pod); {
	case pod.Name != "":
		regarding = pod
	case owner != nil:
		regarding = &corev1.ObjectReference{APIVersion: owner.APIVersion, Kind: owner.Kind, Name: owner.Name, Namespace: pod.Namespace, UID: owner.UID}
	case folder != nil:
		regarding, related = folder, nil
	default:
		return
	}
	i.Recorder.Eventf(regarding, related, corev1.EventTypeWarning, d.Reason, "InjectAgent",
		"pod %s admitted without the sync agent: %s", podName(pod), d.Message)
}

// controllerOf is the pod's controlling owner reference, if any.
func controllerOf(pod *corev1.Pod) *metav1.OwnerReference {
	for i := range pod.OwnerReferences {
		if r := pod.OwnerReferences[i]; r.Controller != nil && *r.Controller {
			return &pod.OwnerReferences[i]
		}
	}
	return nil
}

// podName is the pod's name, or its generateName prefix with a "*" while it has none.
func podName(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	return pod.GenerateName + "*"
}
