package kubeauth

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Rule allows one service account ("namespace/name") or every service account of a
// namespace ("namespace/*").
type Rule struct {
	Namespace string
	// Name is the service account's name, or "*" for any.
	Name string
}

// String returns the rule in its flag form.
func (r Rule) String() string { return r.Namespace + "/" + r.Name }

// allows reports whether the rule covers the service account ns/name.
func (r Rule) allows(ns, name string) bool {
	return r.Namespace == ns && (r.Name == "*" || r.Name == name)
}

// ParseAllowList parses a comma-separated list of "namespace/name" and "namespace/*"
// entries (spaces around entries are ignored; an empty list is empty). A malformed entry
// is an error naming it.
func ParseAllowList(s string) ([]Rule, error) {
	var rules []Rule
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	seen := map[Rule]bool{}
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		ns, name, ok := strings.Cut(e, "/")
		if !ok || strings.Contains(name, "/") {
			return nil, fmt.Errorf("allowed service account %q: want NAMESPACE/NAME or NAMESPACE/*", e)
		}
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return nil, fmt.Errorf("allowed service account %q: namespace %q: %s", e, ns, strings.Join(errs, "; "))
		}
		if name != "*" {
			if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
				return nil, fmt.Errorf("allowed service account %q: name %q: %s", e, name, strings.Join(errs, "; "))
			}
		}
		r := Rule{Namespace: ns, Name: name}
		if !seen[r] {
			seen[r] = true
			rules = append(rules, r)
		}
	}
	return rules, nil
}
