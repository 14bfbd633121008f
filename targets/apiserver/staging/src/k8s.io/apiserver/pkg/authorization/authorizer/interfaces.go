// Package authorizer defines the authorization decision interfaces.
package authorizer

import (
	"context"

	"k8s.io/apiserver/pkg/authentication/user"
)

// Attributes describes the request being authorized.
type Attributes interface {
	GetUser() user.Info
	GetVerb() string
	IsReadOnly() bool
	GetNamespace() string
	GetResource() string
	GetName() string
	IsResourceRequest() bool
	GetPath() string
}

// Authorizer decides whether a request may proceed.
type Authorizer interface {
	Authorize(ctx context.Context, a Attributes) (authorized Decision, reason string, err error)
}

// Decision is the outcome of one authorizer.
type Decision int

const (
	// DecisionDeny is final: later authorizers are not consulted.
	DecisionDeny Decision = iota
	DecisionAllow
	// DecisionNoOpinion lets the next authorizer decide.
	DecisionNoOpinion
)

// AttributesRecord is the concrete Attributes built from a request.
type AttributesRecord struct {
	User            user.Info
	Verb            string
	Namespace       string
	Resource        string
	Name            string
	ResourceRequest bool
	Path            string
}

func (a AttributesRecord) GetUser() user.Info      { return a.User }
func (a AttributesRecord) GetVerb() string         { return a.Verb }
func (a AttributesRecord) GetNamespace() string    { return a.Namespace }
func (a AttributesRecord) GetResource() string     { return a.Resource }
func (a AttributesRecord) GetName() string         { return a.Name }
func (a AttributesRecord) IsResourceRequest() bool { return a.ResourceRequest }
func (a AttributesRecord) GetPath() string         { return a.Path }

func (a AttributesRecord) IsReadOnly() bool {
	return a.Verb == "get" || a.Verb == "list" || a.Verb == "watch"
}
