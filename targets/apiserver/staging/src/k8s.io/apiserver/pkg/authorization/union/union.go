// Package union asks several authorizers in turn; the first definite answer
// wins.
package union

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// unionAuthzHandler is a slice type with value-receiver methods on purpose:
// interface calls then go through the compiler-generated pointer wrapper,
// exactly like the real apiserver.
type unionAuthzHandler []authorizer.Authorizer

// New returns an authorizer that consults each of authorizationHandlers.
func New(authorizationHandlers ...authorizer.Authorizer) authorizer.Authorizer {
	return unionAuthzHandler(authorizationHandlers)
}

func (authzHandler unionAuthzHandler) Authorize(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	var (
		errlist    []string
		reasonlist []string
	)
	for _, currAuthzHandler := range authzHandler {
		decision, reason, err := currAuthzHandler.Authorize(ctx, a)
		if err != nil {
			errlist = append(errlist, err.Error())
		}
		if len(reason) != 0 {
			reasonlist = append(reasonlist, reason)
		}
		switch decision {
		case authorizer.DecisionAllow, authorizer.DecisionDeny:
			return decision, reason, err
		case authorizer.DecisionNoOpinion:
			// continue to the next authorizer
		}
	}
	var err error
	if len(errlist) > 0 {
		err = fmt.Errorf("[%s]", strings.Join(errlist, ", "))
	}
	return authorizer.DecisionNoOpinion, strings.Join(reasonlist, "\n"), err
}
