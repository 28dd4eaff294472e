// Package controllers holds the SyncedFolder reconciler: it turns a SyncedFolder into a sync
// server (StatefulSet with a volume, Services, credentials, TLS, database, ServiceMonitor,
// NetworkPolicy) and reports the server's state and live figures in the status.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// serviceMonitorCRD is the CRD whose arrival or removal re-reconciles every folder.
const serviceMonitorCRD = "servicemonitors.monitoring.coreos.com"

// defaultStatsInterval is how often live figures are refreshed from a ready server.
const defaultStatsInterval = 30 * time.Second

// SyncedFolderReconciler reconciles SyncedFolder objects.
type SyncedFolderReconciler struct {
	// Client reads through the manager's cache, which holds only the operator's own Secrets.
	client.Client
	// APIReader reads users' Secrets (database credentials) straight from the API server.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	// Discovery tells whether monitoring.coreos.com/v1 is served.
	Discovery discovery.DiscoveryInterface
	Settings  Settings
	// StatsInterval is how often live figures are refreshed (defaultStatsInterval if zero).
	StatsInterval time.Duration
	// ServerAddress, when set, replaces the server's in-cluster URL for reading stats (tests
	// run the server on loopback); the TLS server name stays the Service's DNS name.
	ServerAddress func(*syncv1.SyncedFolder) string
	// Now is the clock for certificate renewal (time.Now if nil).
	Now func() time.Time

	controller controller.Controller
	smWatch    struct {
		sync.Mutex
		started bool
		source  func() source.Source
	}
}

// +kubebuilder:rbac:groups=sync.syncedfolder.io,resources=syncedfolders,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=sync.syncedfolder.io,resources=syncedfolders/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=sync.syncedfolder.io,resources=syncedfolders/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=serviceaccounts;secrets;configmaps;services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=monitoring.coreos.com,resources=servicemonitors,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one SyncedFolder's objects to their desired state and reports it.
func (r *SyncedFolderReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	f := &syncv1.SyncedFolder{}
	if err := r.Get(ctx, req.NamespacedName, f); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !f.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, f)
	}
	orig := f.DeepCopy()
	obs := &observed{}
	err := r.reconcileObjects(ctx, f, obs)
	var result ctrl.Result
	if err == nil && obs.serverReady() {
		r.refreshStats(ctx, f, obs)
		result.RequeueAfter = r.statsInterval()
	}
	r.setStatus(f, obs, err)
	r.emitEvents(orig, f)
	if perr := r.Status().Patch(ctx, f, client.MergeFrom(orig)); perr != nil {
		err = errors.Join(err, fmt.Errorf("patch status: %w", perr))
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	return result, nil
}

// reconcileObjects runs the ordered ensure steps. A database problem is recorded in obs and
// does not stop the others (the server's pod waits for its Secret); any other error does.
func (r *SyncedFolderReconciler) reconcileObjects(ctx context.Context, f *syncv1.SyncedFolder, obs *observed) error {
	if err := r.ensureFinalizer(ctx, f); err != nil {
		return err
	}
	if err := r.ensureServiceAccount(ctx, f); err != nil {
		return err
	}
	if err := r.ensureTokenReviewBinding(ctx, f); err != nil {
		return err
	}
	creds, err := r.ensureCredentials(ctx, f)
	if err != nil {
		return err
	}
	ca, err := r.ensureCA(ctx, f)
	if err != nil {
		return err
	}
	tlsData, err := r.ensureTLS(ctx, f, ca)
	if err != nil {
		return err
	}
	obs.caPEM, obs.operatorToken = ca.CertPEM, string(creds[keyOperatorToken])
	if err := r.ensureConfigMap(ctx, f, ca.CertPEM); err != nil {
		return err
	}
	dbData, dbErr := r.ensureDatabase(ctx, f, obs)
	if err := r.ensureServices(ctx, f); err != nil {
		return errors.Join(dbErr, err)
	}
	if err := r.ensureStatefulSet(ctx, f, configHash(creds, tlsData, dbData), obs); err != nil {
		return errors.Join(dbErr, err)
	}
	if err := r.unstickServerRollout(ctx, f, obs.sts); err != nil {
		return errors.Join(dbErr, err)
	}
	if err := r.ensureStorage(ctx, f, obs); err != nil {
		return errors.Join(dbErr, err)
	}
	if err := r.ensureNetworkPolicy(ctx, f); err != nil {
		return errors.Join(dbErr, err)
	}
	if err := r.ensureServiceMonitor(ctx, f, obs); err != nil {
		return errors.Join(dbErr, err)
	}
	r.reportUninjectedPods(ctx, f)
	return dbErr
}

// ensureFinalizer adds the database finalizer when the operator provisions a database, and
// takes it away when the spec no longer asks for provisioning (what was provisioned stays).
func (r *SyncedFolderReconciler) ensureFinalizer(ctx context.Context, f *syncv1.SyncedFolder) error {
	want := provisions(f)
	if want == controllerutil.ContainsFinalizer(f, syncv1.FinalizerDatabase) {
		return nil
	}
	patch := client.MergeFrom(f.DeepCopy())
	if want {
		controllerutil.AddFinalizer(f, syncv1.FinalizerDatabase)
	} else {
		controllerutil.RemoveFinalizer(f, syncv1.FinalizerDatabase)
	}
	if err := r.Patch(ctx, f, patch); err != nil {
		return fmt.Errorf("update finalizers: %w", err)
	}
	return nil
}

// provisions reports whether the operator provisions the folder's PostgreSQL role/database.
func provisions(f *syncv1.SyncedFolder) bool {
	pg := f.Spec.Database.Postgres
	return f.Spec.Database.Type == syncv1.DatabasePostgreSQL && pg != nil && pg.AdminSecretRef != nil
}

// finalize drops a provisioned role and database when the policy says Delete, then lets the
// SyncedFolder go. Owned objects are garbage-collected through their owner references.
func (r *SyncedFolderReconciler) finalize(ctx context.Context, f *syncv1.SyncedFolder) error {
	if err := r.finalizeTokenReviewBinding(ctx, f); err != nil {
		return err
	}
	if !controllerutil.ContainsFinalizer(f, syncv1.FinalizerDatabase) {
		return nil
	}
	pg := f.Spec.Database.Postgres
	if provisions(f) && pg.DeletionPolicy == syncv1.DeletionDelete {
		name := provisionedName(f)
		adminURL, err := r.adminURL(ctx, f)
		switch {
		case apierrors.IsNotFound(err):
			// Without the admin Secret nothing can be dropped; holding the folder forever
			// would also hold its namespace's deletion, so let it go and say so.
			r.Recorder.Eventf(f, nil, corev1.EventTypeWarning, syncv1.ReasonSecretMissing, "Finalize",
				"admin Secret %q is gone: role and database %q were not dropped", pg.AdminSecretRef.Name, name)
		case err != nil:
			return err
		default:
			if err := dropDatabase(ctx, adminURL, name); err != nil {
				r.Recorder.Eventf(f, nil, corev1.EventTypeWarning, syncv1.ReasonConnectionFailed, "Finalize", "drop role and database %q: %v", name, err)
				return err
			}
			r.Recorder.Eventf(f, nil, corev1.EventTypeNormal, "DatabaseDropped", "Finalize", "dropped role and database %q", name)
		}
	}
	patch := client.MergeFrom(f.DeepCopy())
	controllerutil.RemoveFinalizer(f, syncv1.FinalizerDatabase)
	if err := r.Patch(ctx, f, patch); err != nil {
		return fmt.Errorf("remove finalizer: %w", err)
	}
	return nil
}

// statsInterval is the live figures' refresh period.
func (r *SyncedFolderReconciler) statsInterval() time.Duration {
	if r.StatsInterval > 0 {
		return r.StatsInterval
	}
	return defaultStatsInterval
}

// now is the reconciler's clock.
func (r *SyncedFolderReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// reconcileTimeout bounds one reconcile; the steps inside use far less.
const reconcileTimeout = 2 * time.Minute

// SetupWithManager registers the controller: it watches SyncedFolders, every object they own,
// and the ServiceMonitor CRD (so installing Prometheus Operator later is noticed).
func (r *SyncedFolderReconciler) SetupWithManager(mgr ctrl.Manager) error {
	c, err := r.watchOptInPods(ctrl.NewControllerManagedBy(mgr)).
		For(&syncv1.SyncedFolder{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&corev1.Secret{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.Service{}).
		Owns(&appsv1.StatefulSet{}).
		Owns(&networkingv1.NetworkPolicy{}).
		// The server's claim is the StatefulSet's, not the folder's: mapped by its labels, so
		// an expansion's progress is noticed.
		Watches(&corev1.PersistentVolumeClaim{}, handler.EnqueueRequestsFromMapFunc(folderOfClaim)).
		WatchesMetadata(&apiextensionsv1.CustomResourceDefinition{},
			handler.EnqueueRequestsFromMapFunc(r.allFolders),
			builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetName() == serviceMonitorCRD }))).
		Named("syncedfolder").
		// A bound on every reconcile: one call stuck on an unreachable database or server
		// must not hold the queue.
		WithOptions(controller.Options{ReconciliationTimeout: reconcileTimeout}).
		Build(r)
	if err != nil {
		return err
	}
	r.controller = c
	r.smWatch.source = func() source.Source {
		return source.Kind(mgr.GetCache(), client.Object(&monitoringv1.ServiceMonitor{}),
			handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &syncv1.SyncedFolder{}, handler.OnlyControllerOwner()))
	}
	return nil
}

// watchServiceMonitors starts watching owned ServiceMonitors once their API is served, so a
// deleted ServiceMonitor is recreated at once; before that the watch could not start.
func (r *SyncedFolderReconciler) watchServiceMonitors() error {
	r.smWatch.Lock()
	defer r.smWatch.Unlock()
	if r.smWatch.started || r.controller == nil {
		return nil
	}
	if err := r.controller.Watch(r.smWatch.source()); err != nil {
		return fmt.Errorf("watch ServiceMonitors: %w", err)
	}
	r.smWatch.started = true
	return nil
}

// allFolders enqueues every SyncedFolder.
func (r *SyncedFolderReconciler) allFolders(ctx context.Context, _ client.Object) []reconcile.Request {
	var list syncv1.SyncedFolderList
	if err := r.List(ctx, &list); err != nil {
		log.FromContext(ctx).Error(err, "list SyncedFolders")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, f := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&f)})
	}
	return reqs
}
