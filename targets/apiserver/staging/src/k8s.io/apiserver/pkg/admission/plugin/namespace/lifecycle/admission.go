// Package lifecycle rejects changes in namespaces that cannot hold objects.
// The test target has no Namespace objects, so "exists" means "is a valid
// name and not reserved for termination tests".
package lifecycle

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/admission"
)

// PluginName is the name the plugin is registered under.
const PluginName = "NamespaceLifecycle"

// TerminatingNamespace is always treated as being deleted, so a client can
// provoke an admission rejection deterministically.
const TerminatingNamespace = "ktrace-terminating"

// Lifecycle is the namespace lifecycle admission plugin.
type Lifecycle struct {
	*admission.Handler
}

// NewLifecycle returns the plugin; it handles every operation.
func NewLifecycle() *Lifecycle {
	return &Lifecycle{Handler: admission.NewHandler(admission.Create, admission.Update, admission.Delete)}
}

// Admit refuses creation in a terminating namespace and any change in a
// namespace whose name could not exist.
func (l *Lifecycle) Admit(ctx context.Context, a admission.Attributes, o admission.ObjectInterfaces) error {
	ns := a.GetNamespace()
	if !validLabel(ns) {
		return apierrors.NewForbidden(a.GetResource(), a.GetName(), fmt.Errorf("namespace %q is not a valid name", ns))
	}
	if ns == TerminatingNamespace && a.GetOperation() == admission.Create {
		return apierrors.NewForbidden(a.GetResource(), a.GetName(),
			fmt.Errorf("unable to create new content in namespace %s because it is being terminated", ns))
	}
	return nil
}

// validLabel checks an RFC 1123 label, the rule for namespace names.
func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}
