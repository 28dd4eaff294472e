// Command provisioner is the local cluster's volume provisioner: for every pending claim of a
// StorageClass whose provisioner is synced-folder.local/hostpath it creates a directory under
// -dir and a hostPath PersistentVolume pre-bound to the claim; when such a volume is released
// it deletes the directory and the volume. It runs on the host beside the kubelet (hostPath
// is only meaningful on this single node) and polls, which at one node and a handful of
// claims costs less than informers and never misses an event.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Provisioner is the StorageClass provisioner name this program serves.
const Provisioner = "synced-folder.local/hostpath"

const provisionedBy = "pv.kubernetes.io/provisioned-by"

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster")
	dir := flag.String("dir", "", "directory holding the volumes")
	interval := flag.Duration("interval", time.Second, "poll interval")
	flag.Parse()
	if err := run(*kubeconfig, *dir, *interval); err != nil {
		slog.Error("provisioner stopped", "err", err)
		os.Exit(1)
	}
}

func run(kubeconfig, dir string, interval time.Duration) error {
	if kubeconfig == "" || dir == "" || !filepath.IsAbs(dir) {
		return errors.New("usage: provisioner -kubeconfig FILE -dir /absolute/dir")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig %q: %w", kubeconfig, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("create client: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	p := &provisioner{cs: cs, dir: dir}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := p.pass(ctx); err != nil && ctx.Err() == nil {
			slog.Warn("pass incomplete", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

type provisioner struct {
	cs  kubernetes.Interface
	dir string
}

// pass provisions every pending claim of our classes and reclaims every released volume.
func (p *provisioner) pass(ctx context.Context) error {
	classes, err := p.cs.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list storage classes: %w", err)
	}
	ours := map[string]corev1.PersistentVolumeReclaimPolicy{}
	for _, c := range classes.Items {
		if c.Provisioner == Provisioner {
			policy := corev1.PersistentVolumeReclaimDelete
			if c.ReclaimPolicy != nil {
				policy = *c.ReclaimPolicy
			}
			ours[c.Name] = policy
		}
	}
	claims, err := p.cs.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list claims: %w", err)
	}
	var errs []error
	for i := range claims.Items {
		c := &claims.Items[i]
		policy, ok := ours[ptrOr(c.Spec.StorageClassName)]
		if !ok || c.Status.Phase != corev1.ClaimPending || c.Spec.VolumeName != "" || c.DeletionTimestamp != nil {
			continue
		}
		if err := p.provision(ctx, c, policy); err != nil {
			errs = append(errs, err)
		}
	}
	vols, err := p.cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list volumes: %w", err)
	}
	for i := range vols.Items {
		v := &vols.Items[i]
		if v.Annotations[provisionedBy] != Provisioner || v.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
			continue
		}
		if v.Status.Phase == corev1.VolumeReleased || v.Status.Phase == corev1.VolumeFailed {
			if err := p.reclaim(ctx, v); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (p *provisioner) provision(ctx context.Context, c *corev1.PersistentVolumeClaim, policy corev1.PersistentVolumeReclaimPolicy) error {
	name := "pvc-" + string(c.UID)
	path := filepath.Join(p.dir, name)
	// World-writable: pods run as any uid (the project's images use 65532) and hostPath
	// volumes get no fsGroup treatment.
	if err := os.MkdirAll(path, 0o777); err != nil {
		return fmt.Errorf("create volume dir %q: %w", path, err)
	}
	if err := os.Chmod(path, 0o777); err != nil {
		return fmt.Errorf("chmod volume dir %q: %w", path, err)
	}
	size := c.Spec.Resources.Requests[corev1.ResourceStorage]
	hostPathType := corev1.HostPathDirectory
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{provisionedBy: Provisioner}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   c.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: policy,
			StorageClassName:              ptrOr(c.Spec.StorageClassName),
			VolumeMode:                    c.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: c.Namespace, Name: c.Name, UID: c.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: path, Type: &hostPathType},
			},
		},
	}
	if _, err := p.cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create volume %q for claim %s/%s: %w", name, c.Namespace, c.Name, err)
	}
	slog.Info("provisioned", "volume", name, "claim", c.Namespace+"/"+c.Name, "path", path)
	return nil
}

func (p *provisioner) reclaim(ctx context.Context, v *corev1.PersistentVolume) error {
	if hp := v.Spec.HostPath; hp != nil && strings.HasPrefix(hp.Path, p.dir+string(filepath.Separator)) {
		if err := os.RemoveAll(hp.Path); err != nil {
			return fmt.Errorf("remove volume dir %q: %w", hp.Path, err)
		}
	}
	if err := p.cs.CoreV1().PersistentVolumes().Delete(ctx, v.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete volume %q: %w", v.Name, err)
	}
	slog.Info("reclaimed", "volume", v.Name)
	return nil
}

func ptrOr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
