package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

func TestUninjected(t *testing.T) {
	now := metav1.Now()
	cases := []struct {
		name string
		ann  map[string]string
		del  *metav1.Time
		want bool
	}{
		{name: "opted in, no agent", ann: map[string]string{syncv1.AnnotationFolder: "docs"}, want: true},
		{name: "refused by the webhook", ann: map[string]string{syncv1.AnnotationFolder: "docs", syncv1.AnnotationInjectionStatus: "NoTarget: x"}, want: true},
		{name: "injected", ann: map[string]string{syncv1.AnnotationFolder: "docs", syncv1.AnnotationInjected: "docs"}},
		{name: "another folder", ann: map[string]string{syncv1.AnnotationFolder: "other"}},
		{name: "not opted in"},
		{name: "terminating", ann: map[string]string{syncv1.AnnotationFolder: "docs"}, del: &now},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := podMetadata()
			p.Annotations, p.DeletionTimestamp = tc.ann, tc.del
			if got := uninjected(p, "docs"); got != tc.want {
				t.Fatalf("uninjected = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStripPodMetadataKeepsOnlyWhatTheSafetyNetReads(t *testing.T) {
	p := podMetadata()
	p.Name, p.Namespace = "web", "apps"
	p.Labels = map[string]string{"app": "web"}
	p.Annotations = map[string]string{syncv1.AnnotationFolder: "docs", "kubectl.kubernetes.io/last-applied-configuration": "{...}"}
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	out, err := stripPodMetadata(p)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*metav1.PartialObjectMetadata)
	if got.Name != "web" || got.Namespace != "apps" || len(got.Labels) != 0 || len(got.ManagedFields) != 0 ||
		len(got.Annotations) != 1 || got.Annotations[syncv1.AnnotationFolder] != "docs" {
		t.Fatalf("stripped to %+v", got.ObjectMeta)
	}
}
