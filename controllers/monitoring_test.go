package controllers

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// TestServiceMonitorFollowsTheCRD: without the monitoring.coreos.com CRD the folder says so
// in MonitoringReady and is otherwise fine; once the CRD is installed a ServiceMonitor
// appears (and comes back when deleted); when the CRD goes away the condition says so again.
func TestServiceMonitorFollowsTheCRD(t *testing.T) {
	needEnv(t)
	ns := newNamespace(t)
	f := createFolder(t, ns, "metrics", func(f *syncv1.SyncedFolder) {
		f.Spec.Monitoring.Labels = map[string]string{"release": "prom"}
		f.Spec.Monitoring.Interval = "15s"
	})
	waitOwned(t, f)
	waitCondition(t, ns, "metrics", syncv1.ConditionMonitoringReady, metav1.ConditionFalse, syncv1.ReasonServiceMonitorCRDAbsent)

	opts := envtest.CRDInstallOptions{Paths: []string{filepath.Join("..", "config", "test", "crds")}, ErrorIfPathMissing: true}
	if _, err := envtest.InstallCRDs(suite.cfg, opts); err != nil {
		t.Fatalf("install ServiceMonitor CRD: %v", err)
	}
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled {
			if err := envtest.UninstallCRDs(suite.cfg, opts); err != nil {
				t.Errorf("uninstall ServiceMonitor CRD: %v", err)
			}
		}
	})

	waitCondition(t, ns, "metrics", syncv1.ConditionMonitoringReady, metav1.ConditionTrue, syncv1.ReasonServiceMonitorReady)
	sm := &monitoringv1.ServiceMonitor{}
	if err := get(ns, "metrics", sm); err != nil {
		t.Fatal(err)
	}
	if ref := metav1.GetControllerOf(sm); ref == nil || ref.UID != f.UID {
		t.Errorf("ServiceMonitor controller %+v", ref)
	}
	ep := sm.Spec.Endpoints[0]
	if sm.Labels["release"] != "prom" || ep.Interval != "15s" || ep.Port != serverPortName || ep.TLSConfig.CA.ConfigMap.Name != "metrics-config" {
		t.Errorf("ServiceMonitor %+v", sm)
	}

	uid := sm.UID
	if err := suite.client.Delete(context.Background(), sm); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		fresh := &monitoringv1.ServiceMonitor{}
		if err := get(ns, "metrics", fresh); err != nil {
			return err
		}
		if fresh.UID == uid {
			return fmt.Errorf("ServiceMonitor not recreated yet")
		}
		return nil
	})

	if err := envtest.UninstallCRDs(suite.cfg, opts); err != nil {
		t.Fatalf("uninstall ServiceMonitor CRD: %v", err)
	}
	uninstalled = true
	waitCondition(t, ns, "metrics", syncv1.ConditionMonitoringReady, metav1.ConditionFalse, syncv1.ReasonServiceMonitorCRDAbsent)
}
