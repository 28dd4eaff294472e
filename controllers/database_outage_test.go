package controllers

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
	"github.com/syncedfolder/synced-folder/internal/testpg"
)

// A PostgreSQL outage seen by the operator does not change the server's pod template:
// nothing the server is given changed (review, 2026-12-06: the config hash digested
// nothing while the operator's ping failed, so a blip restarted a server that may have
// been serving, and the recovery restarted it again).
func TestDatabaseOutageDoesNotRollTheServer(t *testing.T) {
	needEnv(t)
	pg := testpg.Start(t)
	dbURL := testpg.NewDatabase(t, pg.URL())
	ns := newNamespace(t)
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns}, Data: map[string][]byte{"url": []byte(dbURL)}}
	if err := suite.client.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	createFolder(t, ns, "pgfolder", func(f *syncv1.SyncedFolder) {
		f.Spec.Database = syncv1.DatabaseSpec{Type: syncv1.DatabasePostgreSQL, Postgres: &syncv1.PostgresSpec{
			CredentialsSecretRef: &syncv1.SecretKeyRef{Name: "db"},
		}}
	})
	waitCondition(t, ns, "pgfolder", syncv1.ConditionDatabaseReady, metav1.ConditionTrue, syncv1.ReasonCredentialsProvided)
	hash := func() string {
		sts := &appsv1.StatefulSet{}
		if err := get(ns, "pgfolder", sts); err != nil {
			t.Fatal(err)
		}
		return sts.Spec.Template.Annotations[syncv1.AnnotationConfigHash]
	}
	before := hash()

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	// Nothing else happens meanwhile (the server is not ready, so no stats requeue): play the
	// next periodic or event-driven reconcile.
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "pgfolder"}}
	if _, err := suite.reconciler.Reconcile(context.Background(), req); err == nil {
		t.Fatal("reconcile with the database down: no error")
	}
	waitCondition(t, ns, "pgfolder", syncv1.ConditionDatabaseReady, metav1.ConditionFalse, syncv1.ReasonConnectionFailed)
	during := hash()
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := suite.reconciler.Reconcile(context.Background(), req); err != nil {
		t.Fatalf("reconcile with the database back: %v", err)
	}
	waitCondition(t, ns, "pgfolder", syncv1.ConditionDatabaseReady, metav1.ConditionTrue, syncv1.ReasonCredentialsProvided)
	after := hash()
	if during != before || after != before {
		t.Errorf("config hash %s, then %s with the database unreachable, then %s; want it unchanged (a change restarts the server)",
			before, during, after)
	}
}
