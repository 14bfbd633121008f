// Package authenticator defines the two authenticator shapes whose method
// signatures the tracer presets depend on.
package authenticator

import (
	"context"
	"net/http"

	"k8s.io/apiserver/pkg/authentication/user"
)

// Token checks a bearer token string.
type Token interface {
	AuthenticateToken(ctx context.Context, token string) (*Response, bool, error)
}

// Request checks a whole HTTP request.
type Request interface {
	AuthenticateRequest(req *http.Request) (*Response, bool, error)
}

// Response is what a successful authentication yields.
type Response struct {
	Audiences []string
	User      user.Info
}
