// Package bearertoken extracts "Authorization: Bearer" tokens and hands them
// to a token authenticator.
package bearertoken

import (
	"errors"
	"net/http"
	"strings"

	"k8s.io/apiserver/pkg/authentication/authenticator"
)

// errInvalidToken is returned for a header that names the Bearer scheme but
// carries no usable token, so the union can report it.
var errInvalidToken = errors.New("invalid bearer token")

// Authenticator is a request authenticator backed by a token authenticator.
type Authenticator struct {
	auth authenticator.Token
}

// New wraps a token authenticator.
func New(auth authenticator.Token) *Authenticator {
	return &Authenticator{auth: auth}
}

func (a *Authenticator) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	auth := strings.TrimSpace(req.Header.Get("Authorization"))
	if auth == "" {
		return nil, false, nil
	}
	parts := strings.SplitN(auth, " ", 3)
	if len(parts) < 2 || strings.ToLower(parts[0]) != "bearer" {
		return nil, false, nil
	}
	token := parts[1]
	if len(token) == 0 {
		return nil, false, errInvalidToken
	}

	resp, ok, err := a.auth.AuthenticateToken(req.Context(), token)
	// The token must not reach later handlers once it has been consumed.
	if ok {
		req.Header.Del("Authorization")
	}
	if !ok && err == nil {
		err = errInvalidToken
	}
	return resp, ok, err
}
