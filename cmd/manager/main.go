// Command manager runs the synced-folder operator: the SyncedFolder reconciler (and, from the
// injection issue on, the pod-mutating webhook).
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/go-logr/logr"
	"k8s.io/client-go/discovery"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/syncedfolder/synced-folder/controllers"
	"github.com/syncedfolder/synced-folder/controllers/podinject"
	"github.com/syncedfolder/synced-folder/internal/version"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		metricsAddr, probeAddr     string
		leaderElect, secureMetrics bool
		enableHTTP2                bool
		webhookCertManagement      string
		settings                   controllers.Settings
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", "0", "Address the metrics endpoint binds to: :8443 for HTTPS, :8080 for HTTP, 0 to disable.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the health probe endpoint binds to.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Enable leader election, so only one manager is active.")
	flag.BoolVar(&secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS (self-signed unless certificates are mounted).")
	flag.BoolVar(&enableHTTP2, "enable-http2", false, "Enable HTTP/2 for the metrics and webhook servers (off: CVE-2023-44487).")
	flag.StringVar(&settings.ServerImage, "server-image", envOr("SERVER_IMAGE", "ghcr.io/syncedfolder/synced-folder:"+version.Version), "Default image of the sync server.")
	flag.StringVar(&settings.AgentImage, "agent-image", envOr("AGENT_IMAGE", "ghcr.io/syncedfolder/synced-folder:"+version.Version), "Default image of the injected sync agent.")
	flag.StringVar(&settings.ClusterDomain, "cluster-domain", "cluster.local", "The cluster's DNS domain, for the servers' certificates.")
	flag.StringVar(&settings.OperatorNamespace, "operator-namespace", os.Getenv("POD_NAMESPACE"), "Namespace of this manager; its pods may reach servers (NetworkPolicy).")
	flag.StringVar(&webhookCertManagement, "webhook-cert-management", "self", "Who provides the webhook's serving certificate: self (cert-controller rotates it and patches the caBundle) or external (cert-manager or the chart).")
	logLevel := slog.LevelInfo
	flag.TextVar(&logLevel, "log-level", logLevel, "Log level: DEBUG, INFO, WARN or ERROR.")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if settings.ServerImage == "" || settings.AgentImage == "" {
		return errors.New("--server-image and --agent-image must not be empty")
	}
	if webhookCertManagement != "self" && webhookCertManagement != "external" {
		return fmt.Errorf("--webhook-cert-management %q: want self or external", webhookCertManagement)
	}
	settings.OperatorPodLabels = map[string]string{"control-plane": "controller-manager"}
	ctrl.SetLogger(logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel})))

	// ENABLE_WEBHOOKS=false runs without the webhook server (kubebuilder's convention, for
	// `make run` against a cluster without webhook certificates).
	webhooks := true
	if v, ok := os.LookupEnv("ENABLE_WEBHOOKS"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("ENABLE_WEBHOOKS=%q: %w", v, err)
		}
		webhooks = b
	}

	var tlsOpts []func(*tls.Config)
	if !enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	cfg := ctrl.GetConfigOrDie()
	mgrOpts := ctrl.Options{
		Scheme:                 controllers.NewScheme(),
		Cache:                  controllers.CacheOptions(),
		Client:                 controllers.ClientOptions(),
		Metrics:                metricsOptions(metricsAddr, secureMetrics, tlsOpts),
		HealthProbeBindAddress: probeAddr,
		LeaderElection:         leaderElect,
		LeaderElectionID:       "synced-folder.sync.syncedfolder.io",
	}
	if webhooks {
		mgrOpts.WebhookServer = webhook.NewServer(webhook.Options{Port: podinject.Port, CertDir: podinject.CertDir, TLSOpts: tlsOpts})
	}
	mgr, err := ctrl.NewManager(cfg, mgrOpts)
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return fmt.Errorf("discovery client: %w", err)
	}
	r := &controllers.SyncedFolderReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Scheme:    mgr.GetScheme(),
		Recorder:  mgr.GetEventRecorder("syncedfolder-controller"),
		Discovery: disc,
		Settings:  settings,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up SyncedFolder controller: %w", err)
	}
	if webhooks {
		if err := setupWebhook(mgr, settings, webhookCertManagement); err != nil {
			return err
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("ready check: %w", err)
	}
	ctrl.Log.WithName("setup").Info("starting manager", "version", version.Version, "webhooks", webhooks)
	return mgr.Start(ctrl.SetupSignalHandler())
}

// The metrics endpoint authenticates callers with TokenReviews and authorizes them with
// SubjectAccessReviews (kubebuilder's scaffold): only subjects allowed to get the /metrics
// non-resource URL (config/rbac/metrics_reader_role.yaml) may scrape it.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// metricsOptions serves the manager's metrics on addr; over HTTPS (secure) only to callers
// whose token is allowed to get /metrics, since metrics name every folder. Plain HTTP has no
// filter: it is for `make run` on a developer's machine.
func metricsOptions(addr string, secure bool, tlsOpts []func(*tls.Config)) metricsserver.Options {
	o := metricsserver.Options{BindAddress: addr, SecureServing: secure, TLSOpts: tlsOpts}
	if secure {
		o.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return o
}

// envOr returns the environment variable key, or def when it is unset or empty.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
