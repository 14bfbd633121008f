// Package group decorates authenticated users with implicit groups.
package group

import (
	"net/http"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

// AuthenticatedGroupAdder adds system:authenticated to every user its
// delegate accepts.
type AuthenticatedGroupAdder struct {
	Authenticator authenticator.Request
}

// NewAuthenticatedGroupAdder wraps auth.
func NewAuthenticatedGroupAdder(auth authenticator.Request) authenticator.Request {
	return &AuthenticatedGroupAdder{auth}
}

func (g *AuthenticatedGroupAdder) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	r, ok, err := g.Authenticator.AuthenticateRequest(req)
	if err != nil || !ok {
		return nil, ok, err
	}
	for _, group := range r.User.GetGroups() {
		if group == user.AllAuthenticated {
			return r, true, nil
		}
	}
	// Copy rather than append in place: the delegate may share its slice.
	groups := make([]string, 0, len(r.User.GetGroups())+1)
	groups = append(groups, r.User.GetGroups()...)
	groups = append(groups, user.AllAuthenticated)
	return &authenticator.Response{
		Audiences: r.Audiences,
		User: &user.DefaultInfo{
			Name:   r.User.GetName(),
			UID:    r.User.GetUID(),
			Groups: groups,
		},
	}, true, nil
}
