package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
	"github.com/syncedfolder/synced-folder/internal/testpg"
)

// pgURL is a fresh database on a real PostgreSQL: the shared server of `make test`, or a
// private one this test starts.
func pgURL(t *testing.T) string {
	t.Helper()
	if os.Getenv(testpg.EnvURL) != "" {
		return testpg.URL(t)
	}
	return testpg.NewDatabase(t, testpg.Start(t).URL())
}

// pgExists reports whether role and database name exist on the server of adminURL.
func pgExists(t *testing.T, adminURL, name string) (role, db bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1), EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&role, &db); err != nil {
		t.Fatal(err)
	}
	return role, db
}

func TestPostgresProvisioning(t *testing.T) {
	needEnv(t)
	adminURL := pgURL(t)
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	password, _ := u.User.Password()

	for _, policy := range []syncv1.DeletionPolicy{syncv1.DeletionDelete, syncv1.DeletionRetain} {
		t.Run(string(policy), func(t *testing.T) {
			ns := newNamespace(t)
			admin := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "pg-admin", Namespace: ns},
				Data:       map[string][]byte{"username": []byte(u.User.Username()), "password": []byte(password)},
			}
			if err := suite.client.Create(context.Background(), admin); err != nil {
				t.Fatal(err)
			}
			f := createFolder(t, ns, "db", func(f *syncv1.SyncedFolder) {
				f.Spec.Database = syncv1.DatabaseSpec{Type: syncv1.DatabasePostgreSQL, Postgres: &syncv1.PostgresSpec{
					AdminSecretRef: &corev1.LocalObjectReference{Name: "pg-admin"},
					Host:           u.Hostname(), Port: int32(port), SSLMode: "disable",
					AdminDatabase: u.Path[1:], DeletionPolicy: policy,
				}}
			})
			name := provisionedName(f)
			t.Cleanup(func() {
				// Roles outlive databases: never leave one behind on the shared server.
				if err := dropDatabase(context.Background(), adminURL, name); err != nil {
					t.Errorf("clean up: %v", err)
				}
			})
			got := waitCondition(t, ns, "db", syncv1.ConditionDatabaseReady, metav1.ConditionTrue, syncv1.ReasonProvisioned)
			if got.Status.Database == nil || got.Status.Database.Role != name || got.Status.Database.SecretName != "db-database" {
				t.Errorf("status.database %+v", got.Status.Database)
			}
			if !controllerutil.ContainsFinalizer(got, syncv1.FinalizerDatabase) {
				t.Errorf("finalizers %v", got.Finalizers)
			}

			// The Secret's credentials log in as the new role to the new database.
			s := &corev1.Secret{}
			if err := get(ns, "db-database", s); err != nil {
				t.Fatal(err)
			}
			if ref := metav1.GetControllerOf(s); ref == nil || ref.UID != f.UID {
				t.Errorf("database Secret controller %+v", ref)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, string(s.Data[keyDBURL]))
			if err != nil {
				t.Fatalf("log in with the provisioned credentials: %v", err)
			}
			var user, db string
			if err := conn.QueryRow(ctx, "SELECT current_user, current_database()").Scan(&user, &db); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "CREATE TABLE probe (id int)"); err != nil {
				t.Errorf("the role cannot create tables in its database: %v", err)
			}
			conn.Close(ctx)
			if user != name || db != name {
				t.Errorf("logged in as %s to %s, want %s", user, db, name)
			}
			if string(s.Data[keyDBUsername]) != name || len(s.Data[keyDBPassword]) < 40 {
				t.Errorf("Secret data %v", s.Data)
			}

			if err := suite.client.Delete(context.Background(), got); err != nil {
				t.Fatal(err)
			}
			eventually(t, 30*time.Second, func() error {
				switch err := get(ns, "db", &syncv1.SyncedFolder{}); {
				case apierrors.IsNotFound(err):
					return nil
				case err == nil:
					return errors.New("folder still there")
				default:
					return fmt.Errorf("get folder: %w", err)
				}
			})
			role, database := pgExists(t, adminURL, name)
			want := policy == syncv1.DeletionRetain
			if role != want || database != want {
				t.Errorf("after delete with %s: role exists %v, database exists %v; want %v", policy, role, database, want)
			}
		})
	}
}

func TestPostgresUserCredentials(t *testing.T) {
	needEnv(t)
	dbURL := pgURL(t)
	ns := newNamespace(t)
	bad, _ := url.Parse(dbURL)
	bad.User = url.UserPassword("nobody", "wrong")
	for name, value := range map[string]string{"good": dbURL, "bad": bad.String()} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string][]byte{"url": []byte(value)}}
		if err := suite.client.Create(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	withSecret := func(secret string) func(*syncv1.SyncedFolder) {
		return func(f *syncv1.SyncedFolder) {
			f.Spec.Database = syncv1.DatabaseSpec{Type: syncv1.DatabasePostgreSQL, Postgres: &syncv1.PostgresSpec{
				CredentialsSecretRef: &syncv1.SecretKeyRef{Name: secret},
			}}
		}
	}
	createFolder(t, ns, "good", withSecret("good"))
	createFolder(t, ns, "bad", withSecret("bad"))
	createFolder(t, ns, "missing", withSecret("absent"))

	f := waitCondition(t, ns, "good", syncv1.ConditionDatabaseReady, metav1.ConditionTrue, syncv1.ReasonCredentialsProvided)
	if controllerutil.ContainsFinalizer(f, syncv1.FinalizerDatabase) {
		t.Errorf("user credentials got the database finalizer: %v", f.Finalizers)
	}
	f = waitCondition(t, ns, "bad", syncv1.ConditionDatabaseReady, metav1.ConditionFalse, syncv1.ReasonConnectionFailed)
	c, _ := folderCondition(f, syncv1.ConditionDatabaseReady)
	if !containsFold(c.Message, "password authentication failed") && !containsFold(c.Message, "nobody") {
		t.Errorf("ConnectionFailed message does not say why: %q", c.Message)
	}
	waitCondition(t, ns, "bad", syncv1.ConditionReady, metav1.ConditionFalse, syncv1.ReasonReconcileFailed)
	waitCondition(t, ns, "missing", syncv1.ConditionDatabaseReady, metav1.ConditionFalse, syncv1.ReasonSecretMissing)

	// The server reads the user's Secret as it is.
	good := &syncv1.SyncedFolder{}
	if err := get(ns, "good", good); err != nil {
		t.Fatal(err)
	}
	sts := waitOwned(t, good)["StatefulSet good"].(*appsv1.StatefulSet)
	ref := envMap(sts.Spec.Template.Spec.Containers[0].Env)["SYNCSERVER_DATABASE_URL"].ValueFrom
	if ref == nil || ref.SecretKeyRef.Name != "good" || ref.SecretKeyRef.Key != "url" {
		t.Errorf("SYNCSERVER_DATABASE_URL from %+v, want Secret good key url", ref)
	}
}
