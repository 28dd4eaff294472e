//go:build e2e

package cluster

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
	"github.com/syncedfolder/synced-folder/syncserver"
)

// Names the suite uses in its namespace.
const (
	docs     = "docs"  // the SyncedFolder on the embedded database
	media    = "media" // the SyncedFolder on PostgreSQL
	writer   = "writer"
	intruder = "intruder"
	podA     = "pod-a"
	podB     = "pod-b"
)

// Bounds of the waits: generous for this loaded 2-core machine, still far below the time a
// broken product would need to be noticed.
const (
	rolloutTimeout = 5 * time.Minute
	readyTimeout   = 3 * time.Minute
	syncTimeout    = 45 * time.Second
)

// TestCluster runs the product on the real cluster, one step after the other; every step
// relies on the state the previous ones left.
func TestCluster(t *testing.T) {
	e := newEnv(t)
	ns := fmt.Sprintf("e2e-%d", time.Now().Unix()%100000)
	t.Logf("namespace %s", ns)

	e.step(t, "chart installs and the operator Deployment becomes Ready", e.testChart)
	e.createNamespace(t, ns)
	e.serviceAccount(t, ns, writer)
	e.serviceAccount(t, ns, intruder)
	pg := e.pgAvailable(t)
	if pg {
		e.step(t, "SyncedFolder on PostgreSQL applied", func(t *testing.T) { e.applyPostgresFolder(t, ns) })
	}
	e.step(t, "SyncedFolder on the embedded database becomes Ready", func(t *testing.T) { e.testEmbeddedFolder(t, ns) })
	e.step(t, "annotated pods get the agent; the app starts after the first sync", func(t *testing.T) { e.testInjection(t, ns) })
	e.step(t, "a file written in pod A appears in pod B and on the server", func(t *testing.T) { e.testSync(t, ns) })
	e.step(t, "concurrent edits leave a conflict copy in both pods", func(t *testing.T) { e.testConflict(t, ns) })
	e.step(t, "a delete propagates", func(t *testing.T) { e.testDelete(t, ns) })
	e.step(t, "the audit log names the pods that wrote", func(t *testing.T) { e.testAudit(t, ns) })
	e.step(t, "a service account off the access list is refused", func(t *testing.T) { e.testAccess(t, ns) })
	e.step(t, "Prometheus scrapes the server as the ServiceMonitor says", func(t *testing.T) { e.testPrometheus(t, ns) })
	if pg {
		e.step(t, "SyncedFolder on PostgreSQL becomes Ready and syncs", func(t *testing.T) { e.testPostgresFolder(t, ns) })
	}
	e.step(t, "a server stuck on a bad image recovers once the spec is fixed", func(t *testing.T) { e.testStuckRollout(t, ns) })
	e.step(t, "server pod deleted: restarted on the same volume, agents converge", func(t *testing.T) { e.testServerRestart(t, ns) })
	e.step(t, "operator restarted: nothing is disrupted", func(t *testing.T) { e.testOperatorRestart(t, ns) })
	if pg {
		e.step(t, "PostgreSQL folder deleted: its database is dropped", func(t *testing.T) { e.testPostgresDelete(t, ns) })
	}
}

func (e *env) testChart(t *testing.T) {
	if out, err := e.kubectlRun("apply", "--server-side", "-f", e.serviceMonitorCRD); err != nil {
		t.Fatalf("apply the ServiceMonitor CRD: %v\n%s", err, out)
	}
	out, err := run(e.ctx, e.helm, "upgrade", "--install", e.release, e.chart, "--namespace", e.operatorNS,
		"--create-namespace", "--kubeconfig", e.kubeconfig,
		"--set", "image.repository="+e.imageRepo, "--set-string", "image.tag="+e.imageTag, // a commit tag may be all digits
		"--set", "image.pullPolicy=IfNotPresent", "--set-string", "operator.podAnnotations.image-id="+e.imageID,
		"--wait", "--timeout", rolloutTimeout.String())
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	e.waitOperator(t, "")
	poll(t, time.Minute, "the webhook's caBundle is injected", func() (bool, error) {
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		if err := e.c.Get(e.ctx, client.ObjectKey{Name: "synced-folder-mutating-webhook-configuration"}, &mwc); err != nil {
			return false, err
		}
		if len(mwc.Webhooks) == 0 || len(mwc.Webhooks[0].ClientConfig.CABundle) == 0 {
			return false, fmt.Errorf("no caBundle yet")
		}
		return true, nil
	})
}

// waitOperator waits for the operator Deployment to be rolled out and Ready with a pod other
// than notPod, and returns the ready pod's name.
func (e *env) waitOperator(t *testing.T, notPod string) string {
	t.Helper()
	var name string
	poll(t, rolloutTimeout, "operator Deployment Ready", func() (bool, error) {
		var d appsv1.Deployment
		if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.operatorNS, Name: e.operatorDeployment}, &d); err != nil {
			return false, err
		}
		want := *d.Spec.Replicas
		st := d.Status
		if st.ObservedGeneration != d.Generation || st.UpdatedReplicas != want || st.ReadyReplicas != want || st.AvailableReplicas != want {
			return false, fmt.Errorf("status %+v", st)
		}
		var pods corev1.PodList
		if err := e.c.List(e.ctx, &pods, client.InNamespace(e.operatorNS), client.MatchingLabels{"control-plane": "controller-manager"}); err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.Name != notPod && p.DeletionTimestamp == nil && isReady(&p) {
				name = p.Name
				return true, nil
			}
		}
		return false, fmt.Errorf("no new ready operator pod among %d", len(pods.Items))
	})
	return name
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (e *env) testEmbeddedFolder(t *testing.T, ns string) {
	f := &syncv1.SyncedFolder{
		ObjectMeta: metav1.ObjectMeta{Name: docs, Namespace: ns},
		Spec: syncv1.SyncedFolderSpec{
			Storage:    syncv1.StorageSpec{Size: resource.MustParse("1Gi")},
			Access:     syncv1.AccessSpec{ServiceAccounts: []string{writer}},
			Monitoring: syncv1.MonitoringSpec{Interval: "5s"},
		},
	}
	if err := e.c.Create(e.ctx, f); err != nil {
		t.Fatalf("create SyncedFolder %s/%s: %v", ns, docs, err)
	}
	poll(t, readyTimeout, "SyncedFolder "+docs+" Ready", func() (bool, error) { return e.folderReady(ns, docs) })
	var got syncv1.SyncedFolder
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: docs}, &got); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{syncv1.ConditionServerReady, syncv1.ConditionDatabaseReady, syncv1.ConditionMonitoringReady} {
		if !meta.IsStatusConditionTrue(got.Status.Conditions, c) {
			t.Errorf("condition %s not True: %+v", c, meta.FindStatusCondition(got.Status.Conditions, c))
		}
	}
	if got.Status.Endpoint == "" {
		t.Error("status.endpoint is empty")
	}
	t.Logf("folder %s Ready, endpoint %s", docs, got.Status.Endpoint)
}

func (e *env) testInjection(t *testing.T, ns string) {
	if err := e.c.Create(e.ctx, e.syncedPod(ns, podA, docs, writer)); err != nil {
		t.Fatalf("create pod %s: %v", podA, err)
	}
	a := e.podReady(t, ns, podA, readyTimeout)
	checkInjected(t, a)
	seed := "seeded before pod B existed"
	if _, err := e.probe(ns, podA, "write", "/data/seed.txt", seed); err != nil {
		t.Fatal(err)
	}
	poll(t, syncTimeout, "server has seed.txt", e.serverHasFunc(ns, docs, "seed.txt", &seed))

	if err := e.c.Create(e.ctx, e.syncedPod(ns, podB, docs, writer)); err != nil {
		t.Fatalf("create pod %s: %v", podB, err)
	}
	b := e.podReady(t, ns, podB, readyTimeout)
	checkInjected(t, b)
	// The app container's first act was to list /data: the agent's first sync had already
	// brought seed.txt.
	var log string
	poll(t, 30*time.Second, "pod B's app logged its start listing", func() (bool, error) {
		var err error
		log, err = e.containerLog(ns, podB, "app")
		return strings.Contains(log, "end of listing"), err
	})
	start, _, _ := strings.Cut(log, "end of listing")
	if !strings.Contains(start, "seed.txt") {
		t.Fatalf("pod B's app started before the first sync: its listing at start was %q", start)
	}
	if content, err := e.probe(ns, podB, "cat", "/data/seed.txt"); err != nil || content != seed {
		t.Fatalf("pod B's seed.txt = %q, %v", content, err)
	}
}

// checkInjected checks the webhook's mutation: the agent is the first init container, a
// native sidecar, and the pod is marked.
func checkInjected(t *testing.T, p *corev1.Pod) {
	t.Helper()
	if p.Annotations[syncv1.AnnotationInjected] != docs && p.Annotations[syncv1.AnnotationInjected] != media {
		t.Fatalf("pod %s not marked injected: annotations %v", p.Name, p.Annotations)
	}
	if len(p.Spec.InitContainers) == 0 || p.Spec.InitContainers[0].Name != "syncagent" {
		t.Fatalf("pod %s has no syncagent init container: %+v", p.Name, p.Spec.InitContainers)
	}
	if rp := p.Spec.InitContainers[0].RestartPolicy; rp == nil || *rp != corev1.ContainerRestartPolicyAlways {
		t.Fatalf("pod %s: the agent is not a native sidecar (restartPolicy %v)", p.Name, rp)
	}
}

func (e *env) testSync(t *testing.T, ns string) {
	text := "hello from pod A"
	start := time.Now()
	if _, err := e.probe(ns, podA, "write", "/data/hello.txt", text); err != nil {
		t.Fatal(err)
	}
	e.waitFile(t, ns, podB, "hello.txt", text, syncTimeout)
	t.Logf("hello.txt reached pod B within %.1fs (kubectl exec round trips included)", time.Since(start).Seconds())
	poll(t, syncTimeout, "server has hello.txt", e.serverHasFunc(ns, docs, "hello.txt", &text))
	// And the other way.
	back := "hello from pod B"
	if _, err := e.probe(ns, podB, "write", "/data/reply.txt", back); err != nil {
		t.Fatal(err)
	}
	e.waitFile(t, ns, podA, "reply.txt", back, syncTimeout)
}

func (e *env) testConflict(t *testing.T, ns string) {
	base, fromA, fromB := "base version", "edited in pod A", "edited in pod B"
	if _, err := e.probe(ns, podA, "write", "/data/report.txt", base); err != nil {
		t.Fatal(err)
	}
	e.waitFile(t, ns, podB, "report.txt", base, syncTimeout)
	// Pause B's agent so that both edits are made on the same base, whatever the timing.
	if out, err := e.probe(ns, podB, "signal", "syncagent", "STOP"); err != nil {
		t.Fatalf("pause pod B's agent: %v %s", err, out)
	}
	resumed := false
	defer func() {
		if !resumed {
			_, _ = e.probe(ns, podB, "signal", "syncagent", "CONT")
		}
	}()
	if _, err := e.probe(ns, podA, "write", "/data/report.txt", fromA); err != nil {
		t.Fatal(err)
	}
	poll(t, syncTimeout, "server has pod A's edit", e.serverHasFunc(ns, docs, "report.txt", &fromA))
	if _, err := e.probe(ns, podB, "write", "/data/report.txt", fromB); err != nil {
		t.Fatal(err)
	}
	if out, err := e.probe(ns, podB, "signal", "syncagent", "CONT"); err != nil {
		t.Fatalf("resume pod B's agent: %v %s", err, out)
	}
	resumed = true
	// Both pods converge on: report.txt = the edit the server took first (A's), and one
	// conflict copy holding B's edit.
	for _, pod := range []string{podA, podB} {
		poll(t, syncTimeout, pod+" has report.txt and its conflict copy", func() (bool, error) {
			names, err := e.ls(ns, pod)
			if err != nil {
				return false, err
			}
			var copies []string
			for _, n := range names {
				if strings.HasPrefix(n, "report.sync-conflict-") && strings.HasSuffix(n, ".txt") {
					copies = append(copies, n)
				}
			}
			if len(copies) != 1 {
				return false, fmt.Errorf("want one conflict copy, listing %v", names)
			}
			main, err := e.probe(ns, pod, "cat", "/data/report.txt")
			if err != nil {
				return false, err
			}
			cp, err := e.probe(ns, pod, "cat", "/data/"+copies[0])
			if err != nil {
				return false, err
			}
			if main != fromA || cp != fromB {
				return false, fmt.Errorf("report.txt = %q, %s = %q; want %q and %q", main, copies[0], cp, fromA, fromB)
			}
			return true, nil
		})
	}
}

func (e *env) testDelete(t *testing.T, ns string) {
	if _, err := e.probe(ns, podB, "rm", "/data/hello.txt"); err != nil {
		t.Fatal(err)
	}
	e.waitGone(t, ns, podA, "hello.txt", syncTimeout)
	poll(t, syncTimeout, "server no longer lists hello.txt", e.serverHasFunc(ns, docs, "hello.txt", nil))
}

func (e *env) testAudit(t *testing.T, ns string) {
	wantA, wantB := ns+"/"+podA+"/"+writer, ns+"/"+podB+"/"+writer
	recs, err := e.auditLog(ns, docs)
	if err != nil {
		t.Fatal(err)
	}
	var wroteA, deletedB bool
	agents := map[string]int{}
	for _, r := range recs {
		agents[r.Agent]++
		if r.Path == "hello.txt" && r.Agent == wantA && r.SHA == sha("hello from pod A") {
			wroteA = true
		}
		if r.Path == "hello.txt" && r.Agent == wantB && strings.Contains(strings.ToLower(r.Action), "delete") {
			deletedB = true
		}
	}
	t.Logf("audit log: %d records by %v", len(recs), agents)
	if !wroteA {
		t.Errorf("no record of %s writing hello.txt", wantA)
	}
	if !deletedB {
		t.Errorf("no record of %s deleting hello.txt", wantB)
	}
	for a := range agents {
		if a != wantA && a != wantB {
			t.Errorf("audit log names %q, which is neither pod", a)
		}
	}
}

func (e *env) testAccess(t *testing.T, ns string) {
	// What the server answers, asked from the host with tokens the API server issues.
	s, err := e.server(ns, docs)
	if err != nil {
		t.Fatal(err)
	}
	tokIntruder, err := e.saToken(ns, intruder, audience(ns, docs))
	if err != nil {
		t.Fatal(err)
	}
	tokWriter, err := e.saToken(ns, writer, audience(ns, docs))
	if err != nil {
		t.Fatal(err)
	}
	tokOtherAudience, err := e.saToken(ns, writer, audience(ns, media))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		who, token string
		want       int
	}{
		{"writer (on the access list)", tokWriter, http.StatusOK},
		{"intruder (not on the access list)", tokIntruder, http.StatusForbidden},
		{"writer with another folder's audience", tokOtherAudience, http.StatusUnauthorized},
	} {
		code, body, err := s.get("/v1/stats", c.token)
		if err != nil {
			t.Fatal(err)
		}
		if code != c.want {
			t.Errorf("%s: GET /v1/stats = %d %s; want %d", c.who, code, body, c.want)
		} else {
			t.Logf("%s: %d %s", c.who, code, strings.TrimSpace(string(body)))
		}
	}
	// A pod running as the intruder gets the agent (the webhook does not judge access), but
	// its agent is refused, so its app never starts on an unsynced folder.
	p := e.syncedPod(ns, intruder, docs, intruder)
	if err := e.c.Create(e.ctx, p); err != nil {
		t.Fatalf("create pod %s: %v", intruder, err)
	}
	poll(t, readyTimeout, "the intruder's agent reports the refusal", func() (bool, error) {
		log, err := e.containerLog(ns, intruder, "syncagent")
		if err != nil {
			return false, err
		}
		l := strings.ToLower(log)
		if strings.Contains(l, "403") || strings.Contains(l, "forbidden") || strings.Contains(l, "access list") {
			return true, nil
		}
		return false, fmt.Errorf("agent log so far: %s", tail(log, 800))
	})
	var pod corev1.Pod
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: intruder}, &pod); err != nil {
		t.Fatal(err)
	}
	checkInjected(t, &pod)
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == "app" && (cs.State.Running != nil || (cs.Started != nil && *cs.Started)) {
			t.Errorf("the intruder's app container started: %s", containerStates(&pod))
		}
	}
	recs, err := e.auditLog(ns, docs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if strings.Contains(r.Agent, intruder) {
			t.Errorf("audit log has a record by the intruder: %+v", r)
		}
	}
	if err := e.c.Delete(e.ctx, &pod); err != nil {
		t.Errorf("delete pod %s: %v", intruder, err)
	}
}

func (e *env) testPrometheus(t *testing.T, ns string) {
	if e.prometheus == "" {
		if e.ci {
			t.Fatal("no prometheus binary (PROMETHEUS): in CI a missing dependency is a failure")
		}
		t.Skip("no prometheus binary (PROMETHEUS); hack/e2e.sh installs Debian's")
	}
	var st *scrapeTarget
	poll(t, time.Minute, "resolve the ServiceMonitor", func() (bool, error) {
		var err error
		st, err = e.resolveServiceMonitor(ns, docs)
		return err == nil, err
	})
	t.Logf("ServiceMonitor %s/%s: %s://%v%s every %s, TLS server name %q", ns, docs, st.Scheme, st.Addresses, st.Path, st.Interval, st.ServerName)
	if st.Scheme != "https" || st.CAPEM == "" || st.ServerName == "" {
		t.Fatalf("the ServiceMonitor does not declare verified TLS: %+v", st)
	}
	base := e.startPrometheus(t, "syncserver", st)
	poll(t, 90*time.Second, `up{job="syncserver"} == 1`, func() (bool, error) {
		res, err := promQuery(base, `up{job="syncserver"}`)
		if err != nil {
			return false, err
		}
		if len(res) == 0 {
			return false, fmt.Errorf("no sample yet; targets: %s", promTargets(base))
		}
		for _, r := range res {
			v, _ := r["value"].([]any)
			if len(v) != 2 || v[1] != "1" {
				return false, fmt.Errorf("up = %v; targets: %s", r["value"], promTargets(base))
			}
		}
		return true, nil
	})
	poll(t, 60*time.Second, "sync_requests_total scraped", func() (bool, error) {
		res, err := promQuery(base, `sync_requests_total{job="syncserver"}`)
		if err != nil {
			return false, err
		}
		if len(res) == 0 {
			return false, fmt.Errorf("no series yet")
		}
		t.Logf("sync_requests_total: %d series, e.g. %v", len(res), res[0]["metric"])
		return true, nil
	})
}

// pgAvailable reports whether hack/e2e.sh started PostgreSQL for the suite.
func (e *env) pgAvailable(t *testing.T) bool {
	if e.pgHost != "" && e.pgPort != "" && e.pgPassword != "" {
		return true
	}
	if e.ci {
		t.Fatal("no PostgreSQL (E2E_PG_HOST, E2E_PG_PORT, E2E_PG_PASSWORD): in CI a missing dependency is a failure")
	}
	t.Log("no PostgreSQL (E2E_PG_*): skipping the PostgreSQL folder")
	return false
}

func (e *env) applyPostgresFolder(t *testing.T, ns string) {
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "postgres-admin", Namespace: ns},
		Type:       corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": "postgres", "password": e.pgPassword},
	}
	if err := e.c.Create(e.ctx, sec); err != nil {
		t.Fatalf("create the admin Secret: %v", err)
	}
	var port int32
	if _, err := fmt.Sscan(e.pgPort, &port); err != nil {
		t.Fatalf("E2E_PG_PORT %q: %v", e.pgPort, err)
	}
	f := &syncv1.SyncedFolder{
		ObjectMeta: metav1.ObjectMeta{Name: media, Namespace: ns},
		Spec: syncv1.SyncedFolderSpec{
			Storage: syncv1.StorageSpec{Size: resource.MustParse("1Gi")},
			Database: syncv1.DatabaseSpec{Type: syncv1.DatabasePostgreSQL, Postgres: &syncv1.PostgresSpec{
				AdminSecretRef: &corev1.LocalObjectReference{Name: sec.Name},
				Host:           e.pgHost, Port: port, SSLMode: "disable",
				DeletionPolicy: syncv1.DeletionDelete,
			}},
			Access: syncv1.AccessSpec{ServiceAccounts: []string{writer}},
		},
	}
	if err := e.c.Create(e.ctx, f); err != nil {
		t.Fatalf("create SyncedFolder %s/%s: %v", ns, media, err)
	}
}

// pgDatabaseExists asks the suite's PostgreSQL (on loopback) whether database name exists.
func (e *env) pgDatabaseExists(name string) (bool, error) {
	conn, err := pgx.Connect(e.ctx, fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%s/postgres?sslmode=disable&connect_timeout=5", e.pgPassword, e.pgPort))
	if err != nil {
		return false, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(e.ctx)
	var exists bool
	err = conn.QueryRow(e.ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists)
	return exists, err
}

func (e *env) testPostgresFolder(t *testing.T, ns string) {
	poll(t, readyTimeout, "SyncedFolder "+media+" Ready", func() (bool, error) { return e.folderReady(ns, media) })
	var f syncv1.SyncedFolder
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: media}, &f); err != nil {
		t.Fatal(err)
	}
	if f.Status.Database == nil || f.Status.Database.Name == "" {
		t.Fatalf("status.database not set: %+v", f.Status)
	}
	if ok, err := e.pgDatabaseExists(f.Status.Database.Name); err != nil || !ok {
		t.Fatalf("provisioned database %q exists = %v, %v", f.Status.Database.Name, ok, err)
	}
	pod := e.syncedPod(ns, "pod-c", media, writer)
	if err := e.c.Create(e.ctx, pod); err != nil {
		t.Fatalf("create pod-c: %v", err)
	}
	e.podReady(t, ns, "pod-c", readyTimeout)
	text := "stored through PostgreSQL"
	if _, err := e.probe(ns, "pod-c", "write", "/data/pg.txt", text); err != nil {
		t.Fatal(err)
	}
	poll(t, syncTimeout, "the PostgreSQL server has pg.txt", e.serverHasFunc(ns, media, "pg.txt", &text))
	recs, err := e.auditLog(ns, media)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(recs, func(r syncserver.LegacyLogRecord) bool { return r.Path == "pg.txt" && r.Agent == ns+"/pod-c/"+writer }) {
		t.Errorf("the PostgreSQL audit log has no record of pod-c writing pg.txt: %+v", recs)
	}
	if err := e.c.Delete(e.ctx, pod); err != nil {
		t.Errorf("delete pod-c: %v", err)
	}
}

func (e *env) testPostgresDelete(t *testing.T, ns string) {
	var f syncv1.SyncedFolder
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: media}, &f); err != nil {
		t.Fatal(err)
	}
	db := f.Status.Database.Name
	if err := e.c.Delete(e.ctx, &f); err != nil {
		t.Fatal(err)
	}
	poll(t, 2*time.Minute, "database "+db+" dropped", func() (bool, error) {
		ok, err := e.pgDatabaseExists(db)
		return err == nil && !ok, err
	})
}

// serverPod returns the server pod of folder ns/docs.
func (e *env) serverPod(ns string) (*corev1.Pod, error) {
	var p corev1.Pod
	err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: docs + "-0"}, &p)
	return &p, err
}

func (e *env) testServerRestart(t *testing.T, ns string) {
	old, err := e.serverPod(ns)
	if err != nil {
		t.Fatal(err)
	}
	var pvc corev1.PersistentVolumeClaim
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: "data-" + docs + "-0"}, &pvc); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Delete(e.ctx, old); err != nil {
		t.Fatalf("delete the server pod: %v", err)
	}
	start := time.Now()
	poll(t, readyTimeout, "the StatefulSet restarts the server", func() (bool, error) {
		p, err := e.serverPod(ns)
		if err != nil {
			return false, err
		}
		if p.UID == old.UID {
			return false, fmt.Errorf("old pod still there")
		}
		if !isReady(p) {
			return false, fmt.Errorf("new pod not Ready: %s", containerStates(p))
		}
		return true, nil
	})
	t.Logf("server back in %.1fs", time.Since(start).Seconds())
	var pvc2 corev1.PersistentVolumeClaim
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: "data-" + docs + "-0"}, &pvc2); err != nil {
		t.Fatal(err)
	}
	if pvc2.UID != pvc.UID || pvc2.Status.Phase != corev1.ClaimBound {
		t.Fatalf("the claim changed: uid %s → %s, phase %s", pvc.UID, pvc2.UID, pvc2.Status.Phase)
	}
	seed, fromA := "seeded before pod B existed", "edited in pod A"
	poll(t, syncTimeout, "the restarted server kept seed.txt", e.serverHasFunc(ns, docs, "seed.txt", &seed))
	poll(t, syncTimeout, "the restarted server kept report.txt", e.serverHasFunc(ns, docs, "report.txt", &fromA))
	// Agents reconnect on their own and converge in both directions.
	a, b := "after the server restart, from A", "after the server restart, from B"
	if _, err := e.probe(ns, podA, "write", "/data/after-a.txt", a); err != nil {
		t.Fatal(err)
	}
	if _, err := e.probe(ns, podB, "write", "/data/after-b.txt", b); err != nil {
		t.Fatal(err)
	}
	e.waitFile(t, ns, podB, "after-a.txt", a, 2*syncTimeout)
	e.waitFile(t, ns, podA, "after-b.txt", b, 2*syncTimeout)
	poll(t, readyTimeout, "SyncedFolder Ready again", func() (bool, error) { return e.folderReady(ns, docs) })
}

// restartCounts maps pod/container to its restart count.
func (e *env) restartCounts(t *testing.T, ns string, pods ...string) map[string]int32 {
	t.Helper()
	m := map[string]int32{}
	for _, name := range pods {
		var p corev1.Pod
		if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
			t.Fatal(err)
		}
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			m[name+"/"+cs.Name] = cs.RestartCount
		}
		m[name+"/uid:"+string(p.UID)] = 0
	}
	return m
}

func (e *env) testOperatorRestart(t *testing.T, ns string) {
	before := e.restartCounts(t, ns, podA, podB, docs+"-0")
	var sts appsv1.StatefulSet
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: docs}, &sts); err != nil {
		t.Fatal(err)
	}
	var pods corev1.PodList
	if err := e.c.List(e.ctx, &pods, client.InNamespace(e.operatorNS), client.MatchingLabels{"control-plane": "controller-manager"}); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) == 0 {
		t.Fatal("no operator pod")
	}
	old := pods.Items[0].Name
	restartedAt := metav1.Now()
	for i := range pods.Items {
		if err := e.c.Delete(e.ctx, &pods.Items[i]); err != nil {
			t.Fatalf("delete operator pod: %v", err)
		}
	}
	// Syncing goes on while the operator is away.
	text := "written while the operator restarts"
	if _, err := e.probe(ns, podA, "write", "/data/during-operator-restart.txt", text); err != nil {
		t.Fatal(err)
	}
	e.waitFile(t, ns, podB, "during-operator-restart.txt", text, syncTimeout)
	e.waitOperator(t, old)
	// The new operator reconciles the folder (its figures are refreshed) without touching
	// the server or the pods.
	poll(t, readyTimeout, "the new operator refreshed the folder's status", func() (bool, error) {
		var f syncv1.SyncedFolder
		if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: docs}, &f); err != nil {
			return false, err
		}
		if f.Status.Stats == nil || f.Status.Stats.UpdatedAt.Before(&restartedAt) {
			return false, fmt.Errorf("stats %+v", f.Status.Stats)
		}
		return e.folderReady(ns, docs)
	})
	var sts2 appsv1.StatefulSet
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: docs}, &sts2); err != nil {
		t.Fatal(err)
	}
	if sts2.Generation != sts.Generation {
		t.Errorf("the new operator changed the server's StatefulSet: generation %d → %d", sts.Generation, sts2.Generation)
	}
	after := e.restartCounts(t, ns, podA, podB, docs+"-0")
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s: %d → %d (absent means the pod was replaced)", k, v, after[k])
		}
	}
	// The new operator's webhook injects as the old one did (its certificate still matches
	// the caBundle), and a newcomer starts on the whole folder.
	if err := e.c.Create(e.ctx, e.syncedPod(ns, "pod-d", docs, writer)); err != nil {
		t.Fatalf("create pod-d: %v", err)
	}
	checkInjected(t, e.podReady(t, ns, "pod-d", readyTimeout))
	if got, err := e.probe(ns, "pod-d", "cat", "/data/during-operator-restart.txt"); err != nil || got != text {
		t.Errorf("pod-d's during-operator-restart.txt = %q, %v", got, err)
	}
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
