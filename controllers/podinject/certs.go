package podinject

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

// Names shared with config/webhook and the chart (CONTRACTS.md "Webhook").
const (
	// WebhookConfigurationName is the MutatingWebhookConfiguration whose caBundle the
	// rotator keeps current.
	WebhookConfigurationName = "synced-folder-mutating-webhook-configuration"
	// ServiceName is the webhook's Service in the operator's namespace.
	ServiceName = "synced-folder-webhook-service"
	// CertSecretName is the TLS Secret of the webhook server.
	CertSecretName = "synced-folder-webhook-server-cert"
	// CertDir is where the Secret is mounted and where the webhook server reads it.
	CertDir = "/tmp/k8s-webhook-server/serving-certs"
	// Port is the webhook server's port.
	Port = 9443
)

// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;update;patch

// AddCertRotator adds cert-controller's rotator to mgr: it keeps a self-signed CA and a
// serving certificate for the webhook Service in CertSecretName (namespace), patches the CA
// into the webhook configuration's caBundle, and closes ready once the certificate is
// mounted in certDir and the caBundle is in place. No cert-manager is needed; the chart may
// use cert-manager instead (--webhook-cert-management=external).
func AddCertRotator(mgr ctrl.Manager, namespace, certDir string, ready chan struct{}) error {
	if namespace == "" {
		return errors.New("the operator's namespace is unknown: set POD_NAMESPACE or --operator-namespace")
	}
	err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:      types.NamespacedName{Namespace: namespace, Name: CertSecretName},
		CertDir:        certDir,
		CAName:         "synced-folder-webhook-ca",
		CAOrganization: "synced-folder",
		DNSName:        fmt.Sprintf("%s.%s.svc", ServiceName, namespace),
		ExtraDNSNames:  []string{ServiceName, fmt.Sprintf("%s.%s", ServiceName, namespace)},
		IsReady:        ready,
		Webhooks:       []rotator.WebhookInfo{{Name: WebhookConfigurationName, Type: rotator.Mutating}},
		// Every replica serves the webhook, so every replica needs the certificate, not only
		// the leader.
		RequireLeaderElection: false,
		EnableReadinessCheck:  true,
	})
	if err != nil {
		return fmt.Errorf("add webhook certificate rotator: %w", err)
	}
	return nil
}

// ReadyCheck fails until ready is closed and then defers to next (the webhook server's
// started check), so the manager's pod is Ready only when it can serve admissions.
func ReadyCheck(ready <-chan struct{}, next func() healthz.Checker) healthz.Checker {
	return func(req *http.Request) error {
		select {
		case <-ready:
			return next()(req)
		default:
			return errors.New("webhook certificates are not ready")
		}
	}
}
