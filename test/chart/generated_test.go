package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// TestChartCRDsEqualBases checks the chart renders exactly the CRDs controller-gen writes
// into config/crd/bases, plus the keep policy (hack/generate.sh writes both; the staleness
// test in controllers/ regenerates them).
func TestChartCRDsEqualBases(t *testing.T) {
	objs := decodeAll(t, render(t))
	bases, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(bases) == 0 {
		t.Fatalf("no CRDs in config/crd/bases: %v", err)
	}
	var rendered int
	for _, o := range objs {
		if o.kind == "CustomResourceDefinition" {
			rendered++
		}
	}
	if rendered != len(bases) {
		t.Errorf("chart renders %d CRDs, config/crd/bases holds %d", rendered, len(bases))
	}
	for _, f := range bases {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var want apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(b, &want); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		got := get[*apiextensionsv1.CustomResourceDefinition](t, objs, "CustomResourceDefinition/"+want.Name)
		gotCopy := got.DeepCopy()
		if gotCopy.Annotations["helm.sh/resource-policy"] != "keep" {
			t.Errorf("chart CRD %s lacks helm.sh/resource-policy: keep", want.Name)
		}
		delete(gotCopy.Annotations, "helm.sh/resource-policy")
		if !reflect.DeepEqual(gotCopy, &want) {
			t.Errorf("chart CRD %s differs from %s: run `make manifests`", want.Name, f)
		}
	}
}

// ruleKey is one permission a rule grants: verbs, groups and resources multiply out, so two
// rule lists compare as sets whatever their grouping.
type ruleKey struct{ group, resource, name, url, verb string }

func flatten(rules []rbacv1.PolicyRule) map[ruleKey]bool {
	out := map[ruleKey]bool{}
	orAll := func(s []string) []string {
		if len(s) == 0 {
			return []string{""}
		}
		return s
	}
	for _, r := range rules {
		for _, v := range r.Verbs {
			for _, u := range orAll(r.NonResourceURLs) {
				for _, g := range orAll(r.APIGroups) {
					for _, res := range orAll(r.Resources) {
						for _, n := range orAll(r.ResourceNames) {
							out[ruleKey{g, res, n, u, v}] = true
						}
					}
				}
			}
		}
	}
	return out
}

func diffRules(a, b map[ruleKey]bool) []string {
	var out []string
	for k := range a {
		if !b[k] {
			out = append(out, fmt.Sprintf("%+v", k))
		}
	}
	slices.Sort(out)
	return out
}

// TestChartClusterRoleEqualsGenerated checks the chart's hand-commented ClusterRole grants
// exactly what the controllers' RBAC markers generate into config/rbac/role.yaml, as it is
// now: a marker added without updating the chart fails here.
func TestChartClusterRoleEqualsGenerated(t *testing.T) {
	objs := decodeAll(t, render(t))
	got := get[*rbacv1.ClusterRole](t, objs, "ClusterRole/"+operatorRole)
	b, err := os.ReadFile(filepath.Join(root, "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(b, &want); err != nil {
		t.Fatalf("config/rbac/role.yaml: %v", err)
	}
	g, w := flatten(got.Rules), flatten(want.Rules)
	if extra := diffRules(g, w); len(extra) > 0 {
		t.Errorf("chart ClusterRole grants more than config/rbac/role.yaml: %v", extra)
	}
	if missing := diffRules(w, g); len(missing) > 0 {
		t.Errorf("chart ClusterRole lacks rules of config/rbac/role.yaml (update charts/synced-folder/templates/clusterrole.yaml, with a comment why): %v", missing)
	}
	// Every rule of the template carries a comment saying why.
	tpl, err := os.ReadFile(filepath.Join(chartDir, "templates", "clusterrole.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(tpl), "\n")
	var rules int
	for i, l := range lines {
		if strings.HasPrefix(l, "- apiGroups:") {
			rules++
			if i == 0 || !strings.HasPrefix(lines[i-1], "#") {
				t.Errorf("clusterrole.yaml line %d: rule without a comment above it", i+1)
			}
		}
	}
	if rules != len(got.Rules) {
		t.Errorf("counted %d rules in the template, rendered %d", rules, len(got.Rules))
	}
}
