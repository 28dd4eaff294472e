package controllers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
	"github.com/syncedfolder/synced-folder/internal/envtestassets"
)

// The envtest suite runs the reconciler in a real manager against a real kube-apiserver and
// etcd (hack/envtest.sh builds them). There is no kube-controller-manager: StatefulSets get
// no pods and owner references are not garbage-collected, so tests look at the objects the
// operator writes and play the StatefulSet controller's part where they need a ready server.
var suite struct {
	env        *envtest.Environment
	cfg        *rest.Config
	client     client.Client
	reconciler *SyncedFolderReconciler
	// serverAddr maps namespace/name of a folder to a loopback server URL (stats test).
	serverAddr sync.Map
	// unavailable says why the control plane could not be had (non-CI runs skip then).
	unavailable error
	nsCounter   atomic.Int64
}

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	assets, err := envtestassets.Dir()
	if err != nil {
		if envtestassets.Required() {
			fmt.Fprintf(os.Stderr, "envtest control plane is required (CI=true): %v\n", err)
			return 1
		}
		suite.unavailable = err
		return m.Run()
	}
	ctrl.SetLogger(discardLogger())
	suite.env = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	cfg, err := suite.env.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "start envtest: %v\n", err)
		return 1
	}
	defer func() {
		if err := suite.env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop envtest: %v\n", err)
		}
	}()
	suite.cfg = cfg
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 NewScheme(),
		Cache:                  CacheOptions(),
		Client:                 ClientOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "create manager: %v\n", err)
		return 1
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "discovery client: %v\n", err)
		return 1
	}
	suite.reconciler = &SyncedFolderReconciler{
		Client:        mgr.GetClient(),
		APIReader:     mgr.GetAPIReader(),
		Scheme:        mgr.GetScheme(),
		Recorder:      mgr.GetEventRecorder("syncedfolder-controller"),
		Discovery:     disc,
		Settings:      Settings{ServerImage: "example.org/sync:test", AgentImage: "example.org/sync:test", ClusterDomain: "cluster.local", OperatorNamespace: "synced-folder-system", OperatorPodLabels: map[string]string{"control-plane": "controller-manager"}},
		StatsInterval: 500 * time.Millisecond,
		ServerAddress: func(f *syncv1.SyncedFolder) string {
			if v, ok := suite.serverAddr.Load(f.Namespace + "/" + f.Name); ok {
				return v.(string)
			}
			return serverURL(f)
		},
	}
	if err := suite.reconciler.SetupWithManager(mgr); err != nil {
		fmt.Fprintf(os.Stderr, "set up controller: %v\n", err)
		return 1
	}
	suite.client, err = client.New(cfg, client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		fmt.Fprintf(os.Stderr, "client: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintf(os.Stderr, "manager: %v\n", err)
		code = 1
	}
	return code
}

// needEnv skips (or, with CI=true, TestMain has already failed) when no control plane runs.
func needEnv(t *testing.T) {
	t.Helper()
	if suite.unavailable != nil {
		t.Skipf("envtest control plane unavailable: %v", suite.unavailable)
	}
}

// newNamespace makes a namespace for one test, so tests never see each other's objects.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", suite.nsCounter.Add(1), strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())))
	if len(name) > 50 {
		name = strings.TrimRight(name[:50], "-")
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := suite.client.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return name
}

// eventually polls check until it returns nil or timeout passes, then fails with its last
// error.
func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// get reads obj by namespace/name through the uncached client.
func get(ns, name string, obj client.Object) error {
	return suite.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj)
}

// condition returns the named condition of the folder, or an error saying it is missing.
func folderCondition(f *syncv1.SyncedFolder, typ string) (*metav1.Condition, error) {
	for i := range f.Status.Conditions {
		if f.Status.Conditions[i].Type == typ {
			return &f.Status.Conditions[i], nil
		}
	}
	return nil, fmt.Errorf("no %s condition in %+v", typ, f.Status.Conditions)
}

// waitCondition waits until the folder's condition has status and reason for its current
// generation, and returns the folder.
func waitCondition(t *testing.T, ns, name, typ string, status metav1.ConditionStatus, reason string) *syncv1.SyncedFolder {
	t.Helper()
	f := &syncv1.SyncedFolder{}
	eventually(t, 30*time.Second, func() error {
		if err := get(ns, name, f); err != nil {
			return err
		}
		c, err := folderCondition(f, typ)
		if err != nil {
			return err
		}
		if c.Status != status || c.Reason != reason || c.ObservedGeneration != f.Generation {
			return fmt.Errorf("%s is %s/%s (generation %d of %d): %s", typ, c.Status, c.Reason, c.ObservedGeneration, f.Generation, c.Message)
		}
		return nil
	})
	return f
}
