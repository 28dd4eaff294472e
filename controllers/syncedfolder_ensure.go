package controllers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"maps"
	"strconv"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// apply creates or updates obj through mutate, which sets only the fields the operator owns,
// and makes the folder its controller.
func (r *SyncedFolderReconciler) apply(ctx context.Context, f *syncv1.SyncedFolder, kind string, obj client.Object, mutate func() error) error {
	_, err := controllerutil.CreateOrUpdate(ctx, r.Client, obj, func() error {
		if err := mutate(); err != nil {
			return err
		}
		return controllerutil.SetControllerReference(f, obj, r.Scheme)
	})
	if err != nil {
		return fmt.Errorf("ensure %s %q: %w", kind, obj.GetName(), err)
	}
	return nil
}

// mergeLabels sets want's labels on obj, keeping labels others added.
func mergeLabels(obj metav1.Object, want map[string]string) {
	l := obj.GetLabels()
	if l == nil {
		l = map[string]string{}
	}
	maps.Copy(l, want)
	obj.SetLabels(l)
}

func (r *SyncedFolderReconciler) ensureServiceAccount(ctx context.Context, f *syncv1.SyncedFolder) error {
	want := buildServiceAccount(f)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: want.Name, Namespace: want.Namespace}}
	return r.apply(ctx, f, "ServiceAccount", sa, func() error {
		mergeLabels(sa, want.Labels)
		sa.AutomountServiceAccountToken = want.AutomountServiceAccountToken
		return nil
	})
}

// randomToken is a 256-bit bearer token.
func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// ensureCredentials keeps the server's token file: a token for the operator (stats) and one
// for agents until they authenticate with service-account tokens. Existing tokens are kept.
func (r *SyncedFolderReconciler) ensureCredentials(ctx context.Context, f *syncv1.SyncedFolder) (map[string][]byte, error) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: credentialsSecretName(f), Namespace: f.Namespace}}
	err := r.apply(ctx, f, "Secret", s, func() error {
		mergeLabels(s, commonLabels(f))
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		for _, k := range []string{keyOperatorToken, keyAgentToken} {
			if len(s.Data[k]) == 0 {
				t, err := randomToken()
				if err != nil {
					return err
				}
				s.Data[k] = []byte(t)
			}
		}
		s.Data[keyTokens] = []byte(fmt.Sprintf("%s operator\n%s agent\n", s.Data[keyOperatorToken], s.Data[keyAgentToken]))
		return nil
	})
	return s.Data, err
}

// ensureCA keeps the folder's CA in a Secret that only the operator reads; agents get the
// certificate alone through the ConfigMap.
func (r *SyncedFolderReconciler) ensureCA(ctx context.Context, f *syncv1.SyncedFolder) (keyPair, error) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: caSecretName(f), Namespace: f.Namespace}}
	var ca keyPair
	err := r.apply(ctx, f, "Secret", s, func() error {
		mergeLabels(s, commonLabels(f))
		kp, _, err := ensureCA(s.Data[keyCACert], s.Data[keyCAKey], fmt.Sprintf("synced-folder %s/%s CA", f.Namespace, f.Name), r.now())
		if err != nil {
			return err
		}
		ca = kp
		s.Data = map[string][]byte{keyCACert: kp.CertPEM, keyCAKey: kp.KeyPEM}
		return nil
	})
	return ca, err
}

// ensureTLS keeps the server's serving certificate for its Service DNS names, issued by the
// folder's CA and renewed before it expires (the config hash then rolls the server).
func (r *SyncedFolderReconciler) ensureTLS(ctx context.Context, f *syncv1.SyncedFolder, ca keyPair) (map[string][]byte, error) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: tlsSecretName(f), Namespace: f.Namespace}}
	err := r.apply(ctx, f, "Secret", s, func() error {
		mergeLabels(s, commonLabels(f))
		if s.CreationTimestamp.IsZero() {
			s.Type = corev1.SecretTypeTLS
		}
		kp, _, err := ensureServing(s.Data[keyTLSCert], s.Data[keyTLSKey], ca, serverDNSNames(f, r.Settings.ClusterDomain), r.now())
		if err != nil {
			return err
		}
		s.Data = map[string][]byte{keyTLSCert: kp.CertPEM, keyTLSKey: kp.KeyPEM, keyCACert: ca.CertPEM}
		return nil
	})
	return s.Data, err
}

func (r *SyncedFolderReconciler) ensureConfigMap(ctx context.Context, f *syncv1.SyncedFolder, caPEM []byte) error {
	want := buildConfigMap(f, caPEM)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: want.Name, Namespace: want.Namespace}}
	return r.apply(ctx, f, "ConfigMap", cm, func() error {
		mergeLabels(cm, want.Labels)
		cm.Data = want.Data
		return nil
	})
}

func (r *SyncedFolderReconciler) ensureServices(ctx context.Context, f *syncv1.SyncedFolder) error {
	headless := buildHeadlessService(f)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: headless.Name, Namespace: headless.Namespace}}
	if err := r.apply(ctx, f, "Service", svc, func() error {
		mergeLabels(svc, headless.Labels)
		if svc.CreationTimestamp.IsZero() {
			svc.Spec.ClusterIP = headless.Spec.ClusterIP
		}
		svc.Spec.Selector = headless.Spec.Selector
		svc.Spec.Ports = headless.Spec.Ports
		svc.Spec.PublishNotReadyAddresses = headless.Spec.PublishNotReadyAddresses
		return nil
	}); err != nil {
		return err
	}
	clientSvc := buildClientService(f)
	svc = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: clientSvc.Name, Namespace: clientSvc.Namespace}}
	return r.apply(ctx, f, "Service", svc, func() error {
		mergeLabels(svc, clientSvc.Labels)
		svc.Spec.Type = clientSvc.Spec.Type
		svc.Spec.Selector = clientSvc.Spec.Selector
		svc.Spec.Ports = clientSvc.Spec.Ports
		return nil
	})
}

// restartedAtAnnotation is what `kubectl rollout restart` sets; it survives reconciles.
const restartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// ensureStatefulSet keeps the server. Selector, service name and volume claim templates are
// immutable, so they are set at creation only.
func (r *SyncedFolderReconciler) ensureStatefulSet(ctx context.Context, f *syncv1.SyncedFolder, hash string, obs *observed) error {
	want := buildStatefulSet(f, r.Settings, hash)
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: want.Name, Namespace: want.Namespace}}
	err := r.apply(ctx, f, "StatefulSet", sts, func() error {
		mergeLabels(sts, want.Labels)
		if sts.CreationTimestamp.IsZero() {
			sts.Spec = want.Spec
			return nil
		}
		template := want.Spec.Template
		if v, ok := sts.Spec.Template.Annotations[restartedAtAnnotation]; ok {
			template.Annotations[restartedAtAnnotation] = v
		}
		sts.Spec.Replicas = want.Spec.Replicas
		sts.Spec.Template = template
		return nil
	})
	obs.sts = sts
	return err
}

func (r *SyncedFolderReconciler) ensureNetworkPolicy(ctx context.Context, f *syncv1.SyncedFolder) error {
	want := buildNetworkPolicy(f, r.Settings)
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: want.Name, Namespace: want.Namespace}}
	return r.apply(ctx, f, "NetworkPolicy", np, func() error {
		mergeLabels(np, want.Labels)
		np.Spec = want.Spec
		return nil
	})
}

// monitoringServed reports whether the API server serves monitoring.coreos.com/v1
// ServiceMonitors; asking discovery each time also notices a removed CRD.
func (r *SyncedFolderReconciler) monitoringServed() (bool, error) {
	list, err := r.Discovery.ServerResourcesForGroupVersion(monitoringv1.SchemeGroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discover %s: %w", monitoringv1.SchemeGroupVersion, err)
	}
	for _, res := range list.APIResources {
		if res.Kind == monitoringv1.ServiceMonitorsKind {
			return true, nil
		}
	}
	return false, nil
}

// ensureServiceMonitor keeps the ServiceMonitor when monitoring is enabled and the API is
// served; an absent API is a condition, not an error.
func (r *SyncedFolderReconciler) ensureServiceMonitor(ctx context.Context, f *syncv1.SyncedFolder, obs *observed) error {
	served, err := r.monitoringServed()
	if err != nil {
		return err
	}
	enabled := f.Spec.Monitoring.MonitoringEnabled()
	if !served && enabled {
		// The CRD's create event can arrive before discovery serves its API, and no later
		// event would come: a CRD that exists but is not served yet is retried, not taken
		// for absent.
		crd := &apiextensionsv1.CustomResourceDefinition{}
		err := r.APIReader.Get(ctx, types.NamespacedName{Name: serviceMonitorCRD}, crd)
		switch {
		case err == nil && crd.DeletionTimestamp.IsZero():
			return fmt.Errorf("CRD %s exists but its API is not served yet", serviceMonitorCRD)
		case err != nil && !apierrors.IsNotFound(err):
			return fmt.Errorf("get CRD %s: %w", serviceMonitorCRD, err)
		}
	}
	switch {
	case !served:
		if enabled {
			obs.monitoring = condition(syncv1.ConditionMonitoringReady, false, syncv1.ReasonServiceMonitorCRDAbsent,
				"the cluster does not serve monitoring.coreos.com/v1 ServiceMonitor; install the Prometheus Operator CRDs to get one")
		} else {
			obs.monitoring = condition(syncv1.ConditionMonitoringReady, false, syncv1.ReasonMonitoringDisabled, "spec.monitoring.enabled is false")
		}
		return nil
	case !enabled:
		obs.monitoring = condition(syncv1.ConditionMonitoringReady, false, syncv1.ReasonMonitoringDisabled, "spec.monitoring.enabled is false")
		return r.deleteOwned(ctx, f, &monitoringv1.ServiceMonitor{}, serviceMonitorName(f))
	}
	if err := r.watchServiceMonitors(); err != nil {
		return err
	}
	want := buildServiceMonitor(f)
	sm := &monitoringv1.ServiceMonitor{ObjectMeta: metav1.ObjectMeta{Name: want.Name, Namespace: want.Namespace}}
	if err := r.apply(ctx, f, "ServiceMonitor", sm, func() error {
		mergeLabels(sm, want.Labels)
		sm.Spec = want.Spec
		return nil
	}); err != nil {
		return err
	}
	obs.monitoring = condition(syncv1.ConditionMonitoringReady, true, syncv1.ReasonServiceMonitorReady,
		fmt.Sprintf("ServiceMonitor %q scrapes the server every %s", sm.Name, sm.Spec.Endpoints[0].Interval))
	return nil
}

// deleteOwned deletes the named object when the folder controls it.
func (r *SyncedFolderReconciler) deleteOwned(ctx context.Context, f *syncv1.SyncedFolder, obj client.Object, name string) error {
	err := r.Get(ctx, types.NamespacedName{Namespace: f.Namespace, Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get %q: %w", name, err)
	}
	if !metav1.IsControlledBy(obj, f) {
		return nil
	}
	if err := r.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete %q: %w", name, err)
	}
	return nil
}

// ensureDatabase makes the server's database usable and records DatabaseReady in obs. It
// returns the Secret data the server reads (for the config hash), also when the database
// does not answer: the hash follows what the server is given, not whether the operator
// could reach the database, so that a blip does not restart a working server (twice).
func (r *SyncedFolderReconciler) ensureDatabase(ctx context.Context, f *syncv1.SyncedFolder, obs *observed) (map[string][]byte, error) {
	pg := f.Spec.Database.Postgres
	if f.Spec.Database.Type != syncv1.DatabasePostgreSQL || pg == nil {
		obs.db = condition(syncv1.ConditionDatabaseReady, true, syncv1.ReasonEmbeddedDatabase, "metadata is kept in the embedded database on the server's volume")
		return nil, nil
	}
	if pg.CredentialsSecretRef != nil {
		ref := databaseURLRef(f)
		dsn, err := r.secretValue(ctx, f.Namespace, ref.Name, ref.Key, obs)
		if err != nil {
			return nil, err
		}
		if err := pingDatabase(ctx, string(dsn)); err != nil {
			obs.db = condition(syncv1.ConditionDatabaseReady, false, syncv1.ReasonConnectionFailed, fmt.Sprintf("connect with Secret %q: %v", ref.Name, err))
			return map[string][]byte{"url": dsn}, fmt.Errorf("connect to PostgreSQL with Secret %q: %w", ref.Name, err)
		}
		obs.db = condition(syncv1.ConditionDatabaseReady, true, syncv1.ReasonCredentialsProvided, fmt.Sprintf("connected with the credentials in Secret %q", ref.Name))
		return map[string][]byte{"url": dsn}, nil
	}
	adminURL, err := r.adminURL(ctx, f)
	if err != nil {
		reason := syncv1.ReasonSecretInvalid
		if apierrors.IsNotFound(err) {
			reason = syncv1.ReasonSecretMissing
		}
		obs.db = condition(syncv1.ConditionDatabaseReady, false, reason, err.Error())
		return nil, err
	}
	name := provisionedName(f)
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: databaseSecretName(f), Namespace: f.Namespace}}
	if err := r.apply(ctx, f, "Secret", s, func() error {
		mergeLabels(s, commonLabels(f))
		password := string(s.Data[keyDBPassword])
		if password == "" {
			p, err := newPassword()
			if err != nil {
				return err
			}
			password = p
		}
		s.Data = map[string][]byte{
			keyDBUsername: []byte(name),
			keyDBPassword: []byte(password),
			keyDBHost:     []byte(pg.Host),
			keyDBPort:     []byte(strconv.Itoa(int(pg.Port))),
			keyDBName:     []byte(name),
			keyDBURL:      []byte(postgresURL(name, password, pg.Host, pg.Port, name, pg.SSLMode)),
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := provisionDatabase(ctx, adminURL, name, string(s.Data[keyDBPassword])); err != nil {
		obs.db = condition(syncv1.ConditionDatabaseReady, false, syncv1.ReasonProvisioningFailed, err.Error())
		return s.Data, fmt.Errorf("provision PostgreSQL role and database %q: %w", name, err)
	}
	obs.dbStatus = &syncv1.DatabaseStatus{Role: name, Name: name, SecretName: s.Name}
	obs.db = condition(syncv1.ConditionDatabaseReady, true, syncv1.ReasonProvisioned,
		fmt.Sprintf("role and database %q exist on %s; credentials in Secret %q", name, pg.Host, s.Name))
	return s.Data, nil
}

// adminURL reads the admin Secret and builds the admin connection URL.
func (r *SyncedFolderReconciler) adminURL(ctx context.Context, f *syncv1.SyncedFolder) (string, error) {
	pg := f.Spec.Database.Postgres
	var s corev1.Secret
	key := types.NamespacedName{Namespace: f.Namespace, Name: pg.AdminSecretRef.Name}
	if err := r.APIReader.Get(ctx, key, &s); err != nil {
		return "", fmt.Errorf("read admin Secret %q: %w", key.Name, err)
	}
	user, password := string(s.Data["username"]), string(s.Data["password"])
	if user == "" {
		return "", fmt.Errorf("admin Secret %q has no %q key", key.Name, "username")
	}
	db := pg.AdminDatabase
	if db == "" {
		db = "postgres"
	}
	return postgresURL(user, password, pg.Host, pg.Port, db, pg.SSLMode), nil
}

// secretValue reads one key of a user's Secret, recording a missing Secret or key in obs.
func (r *SyncedFolderReconciler) secretValue(ctx context.Context, namespace, name, key string, obs *observed) ([]byte, error) {
	var s corev1.Secret
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &s)
	if apierrors.IsNotFound(err) {
		obs.db = condition(syncv1.ConditionDatabaseReady, false, syncv1.ReasonSecretMissing, fmt.Sprintf("Secret %q does not exist", name))
		return nil, fmt.Errorf("read Secret %q: %w", name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read Secret %q: %w", name, err)
	}
	v, ok := s.Data[key]
	if !ok || len(v) == 0 {
		obs.db = condition(syncv1.ConditionDatabaseReady, false, syncv1.ReasonSecretInvalid, fmt.Sprintf("Secret %q has no key %q", name, key))
		return nil, fmt.Errorf("secret %q has no key %q", name, key)
	}
	return v, nil
}
