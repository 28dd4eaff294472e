package controllers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
	syncclient "github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// statsTimeout bounds the stats call of a reconcile.
const statsTimeout = 5 * time.Second

// observed is what the ensure steps learned, from which the status is written.
type observed struct {
	caPEM         []byte
	operatorToken string
	db            metav1.Condition
	dbStatus      *syncv1.DatabaseStatus
	monitoring    metav1.Condition
	storage       metav1.Condition
	sts           *appsv1.StatefulSet
}

// condition builds a condition (its ObservedGeneration is set when it is stored).
func condition(typ string, ok bool, reason, message string) metav1.Condition {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: message}
}

// serverReady reports whether the StatefulSet has a ready pod of its current revision.
func (o *observed) serverReady() bool {
	s := o.sts
	return s != nil && !s.CreationTimestamp.IsZero() && s.Spec.Replicas != nil && *s.Spec.Replicas > 0 &&
		s.Status.ObservedGeneration >= s.Generation && s.Status.ReadyReplicas >= 1 && s.Status.UpdatedReplicas >= 1
}

// serverCondition is ServerReady.
func (o *observed) serverCondition(f *syncv1.SyncedFolder) metav1.Condition {
	switch {
	case f.Spec.Suspend:
		return condition(syncv1.ConditionServerReady, false, syncv1.ReasonSuspended, "spec.suspend is true: the server is scaled to zero")
	case o.serverReady():
		return condition(syncv1.ConditionServerReady, true, syncv1.ReasonServerRunning, fmt.Sprintf("server pod %s-0 is ready at %s", o.sts.Name, serverURL(f)))
	case o.sts == nil || o.sts.CreationTimestamp.IsZero():
		return condition(syncv1.ConditionServerReady, false, syncv1.ReasonServerNotReady, "the server's StatefulSet does not exist yet")
	default:
		return condition(syncv1.ConditionServerReady, false, syncv1.ReasonServerNotReady,
			fmt.Sprintf("waiting for the server: %d/1 pods ready, %d updated", o.sts.Status.ReadyReplicas, o.sts.Status.UpdatedReplicas))
	}
}

// setStatus writes everything observed into f.Status; reconcileErr, when set, makes Ready
// False with the error as message.
func (r *SyncedFolderReconciler) setStatus(f *syncv1.SyncedFolder, obs *observed, reconcileErr error) {
	st := &f.Status
	st.ObservedGeneration = f.Generation
	st.Endpoint = serverURL(f)
	st.ConfigMapName = configMapName(f)
	if obs.dbStatus != nil {
		st.Database = obs.dbStatus
	} else if !provisions(f) {
		st.Database = nil
	}
	if f.Spec.Suspend {
		st.Stats = nil
	}
	set := func(c metav1.Condition) {
		c.ObservedGeneration = f.Generation
		meta.SetStatusCondition(&st.Conditions, c)
	}
	server := obs.serverCondition(f)
	set(server)
	if obs.db.Type != "" {
		set(obs.db)
	}
	if obs.monitoring.Type != "" {
		set(obs.monitoring)
	}
	if obs.storage.Type != "" {
		set(obs.storage)
	}
	db := meta.FindStatusCondition(st.Conditions, syncv1.ConditionDatabaseReady)
	switch {
	case reconcileErr != nil:
		set(condition(syncv1.ConditionReady, false, syncv1.ReasonReconcileFailed, truncate(reconcileErr.Error())))
	case server.Status != metav1.ConditionTrue:
		set(condition(syncv1.ConditionReady, false, server.Reason, server.Message))
	case db == nil || db.Status != metav1.ConditionTrue:
		set(condition(syncv1.ConditionReady, false, syncv1.ReasonNotReady, "the database is not ready"))
	default:
		set(condition(syncv1.ConditionReady, true, syncv1.ReasonReconciled, "the server is running and its database is ready"))
	}
}

// truncate keeps a condition message within the API's 32 KiB limit.
func truncate(s string) string {
	const max = 4096
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// emitEvents records an event for each condition whose status or reason changed.
func (r *SyncedFolderReconciler) emitEvents(before, after *syncv1.SyncedFolder) {
	for _, typ := range []string{syncv1.ConditionServerReady, syncv1.ConditionDatabaseReady, syncv1.ConditionMonitoringReady, syncv1.ConditionStorageReady, syncv1.ConditionReady} {
		now := meta.FindStatusCondition(after.Status.Conditions, typ)
		if now == nil {
			continue
		}
		old := meta.FindStatusCondition(before.Status.Conditions, typ)
		if old != nil && old.Status == now.Status && old.Reason == now.Reason {
			continue
		}
		kind := corev1.EventTypeNormal
		if now.Status != metav1.ConditionTrue && now.Reason != syncv1.ReasonMonitoringDisabled && now.Reason != syncv1.ReasonSuspended && !normalStorageReason(now.Reason) {
			kind = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(after, nil, kind, now.Reason, "Reconcile", "%s is %s: %s", typ, now.Status, now.Message)
	}
}

// bearerTransport adds the operator's token to every request.
type bearerTransport struct {
	token string
	next  http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (b bearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(req)
}

// refreshStats reads the live figures from the server into f.Status.Stats. A failure keeps
// the previous figures: they are informational and refreshed on the next round.
func (r *SyncedFolderReconciler) refreshStats(ctx context.Context, f *syncv1.SyncedFolder, obs *observed) {
	stats, err := r.readStats(ctx, f, obs)
	if err != nil {
		log.FromContext(ctx).Info("server stats unavailable", "error", err.Error())
		return
	}
	out := &syncv1.FolderStats{
		Files:           stats.Files,
		Bytes:           stats.Bytes,
		Size:            humanBytes(stats.Bytes),
		AgentsConnected: stats.AgentsConnected,
		Conflicts:       stats.Conflicts,
		UpdatedAt:       metav1.NewTime(r.now()),
	}
	if !stats.LastChange.IsZero() {
		out.LastChange = &metav1.Time{Time: stats.LastChange}
	}
	f.Status.Stats = out
}

func (r *SyncedFolderReconciler) readStats(ctx context.Context, f *syncv1.SyncedFolder, obs *observed) (*proto.Stats, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(obs.caPEM) {
		return nil, fmt.Errorf("folder CA holds no certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: serverDNSNames(f, r.Settings.ClusterDomain)[0], MinVersion: tls.VersionTLS12,
	}}
	defer tr.CloseIdleConnections()
	addr := serverURL(f)
	if r.ServerAddress != nil {
		addr = r.ServerAddress(f)
	}
	c, err := syncclient.New(syncclient.Options{
		BaseURL:   addr,
		Timeout:   statsTimeout,
		UserAgent: "synced-folder-operator",
		Transport: bearerTransport{token: obs.operatorToken, next: tr},
	})
	if err != nil {
		return nil, err
	}
	return c.Stats(ctx)
}

// humanBytes formats n with binary units, as kubectl users read sizes.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
