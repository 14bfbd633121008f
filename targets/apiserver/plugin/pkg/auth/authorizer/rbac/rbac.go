// Package rbac is a small rule-based authorizer in the place of the real
// RBAC authorizer: rules are fixed at start-up instead of read from
// Role/ClusterRole objects.
package rbac

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// PolicyRule grants verbs on resources or on non-resource URL paths.
// "*" matches anything; a trailing "*" in a URL is a prefix match.
type PolicyRule struct {
	Verbs           []string
	Resources       []string
	NonResourceURLs []string
}

// Binding grants rules to a user or a group.
type Binding struct {
	User  string
	Group string
	Rules []PolicyRule
}

// RBACAuthorizer allows exactly what its bindings grant and denies the rest.
type RBACAuthorizer struct {
	bindings []Binding
}

// New returns an authorizer for the given bindings.
func New(bindings ...Binding) *RBACAuthorizer {
	return &RBACAuthorizer{bindings: bindings}
}

// Authorize returns DecisionAllow or DecisionNoOpinion; the union turns "no
// authorizer said yes" into a 403.
func (r *RBACAuthorizer) Authorize(ctx context.Context, requestAttributes authorizer.Attributes) (authorizer.Decision, string, error) {
	u := requestAttributes.GetUser()
	if u == nil {
		return authorizer.DecisionNoOpinion, "no user on request", nil
	}
	for i := range r.bindings {
		b := &r.bindings[i]
		if !appliesTo(u, b) {
			continue
		}
		for j := range b.Rules {
			if ruleAllows(requestAttributes, &b.Rules[j]) {
				return authorizer.DecisionAllow, "", nil
			}
		}
	}
	what := requestAttributes.GetResource()
	if !requestAttributes.IsResourceRequest() {
		what = requestAttributes.GetPath()
	}
	return authorizer.DecisionNoOpinion, fmt.Sprintf("RBAC: %q may not %s %s", u.GetName(), requestAttributes.GetVerb(), what), nil
}

func appliesTo(u user.Info, b *Binding) bool {
	if b.User != "" && b.User == u.GetName() {
		return true
	}
	if b.Group != "" {
		for _, g := range u.GetGroups() {
			if g == b.Group {
				return true
			}
		}
	}
	return false
}

func ruleAllows(a authorizer.Attributes, rule *PolicyRule) bool {
	if !matches(rule.Verbs, a.GetVerb(), false) {
		return false
	}
	if a.IsResourceRequest() {
		return matches(rule.Resources, a.GetResource(), false)
	}
	return matches(rule.NonResourceURLs, a.GetPath(), true)
}

func matches(patterns []string, value string, prefixGlob bool) bool {
	for _, p := range patterns {
		if p == "*" || p == value {
			return true
		}
		if prefixGlob && strings.HasSuffix(p, "*") && strings.HasPrefix(value, strings.TrimSuffix(p, "*")) {
			return true
		}
	}
	return false
}
