package main

import (
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/syncedfolder/synced-folder/controllers"
	"github.com/syncedfolder/synced-folder/controllers/podinject"
)

// setupWebhook registers the pod-injection webhook. With certManagement "self" the
// certificate comes from cert-controller's rotator, and the webhook server is added only once
// the certificate is on disk (it cannot start without one); the manager reports Ready only
// after that. With "external" the mounted Secret is expected to be there already.
func setupWebhook(mgr ctrl.Manager, s controllers.Settings, certManagement string) error {
	wh := podinject.NewWebhook(mgr.GetClient(), mgr.GetScheme(), mgr.GetEventRecorder("syncedfolder-webhook"),
		podinject.Config{AgentImage: s.AgentImage, OperatorNamespace: s.OperatorNamespace})
	started := func() healthz.Checker { return mgr.GetWebhookServer().StartedChecker() }
	if certManagement == "external" {
		mgr.GetWebhookServer().Register(podinject.Path, wh)
		if err := mgr.AddReadyzCheck("webhook", started()); err != nil {
			return fmt.Errorf("webhook ready check: %w", err)
		}
		return nil
	}
	ready := make(chan struct{})
	if err := podinject.AddCertRotator(mgr, s.OperatorNamespace, podinject.CertDir, ready); err != nil {
		return err
	}
	go func() {
		<-ready
		// Getting the server adds it to the running manager, which starts it now that the
		// certificate exists.
		mgr.GetWebhookServer().Register(podinject.Path, wh)
	}()
	if err := mgr.AddReadyzCheck("webhook", podinject.ReadyCheck(ready, started)); err != nil {
		return fmt.Errorf("webhook ready check: %w", err)
	}
	return nil
}
