// Package tokenfile authenticates against a static token read from a file.
package tokenfile

import (
	"context"
	"crypto/subtle"
	"fmt"
	"os"
	"strings"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

// TokenAuthenticator knows exactly one token and the user it belongs to.
type TokenAuthenticator struct {
	token string
	user  *user.DefaultInfo
}

// NewFromFile reads the token (one line, surrounding space ignored) from
// path and binds it to u.
func NewFromFile(path string, u *user.DefaultInfo) (*TokenAuthenticator, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	token := strings.TrimSpace(string(data))
	if token == "" || strings.ContainsAny(token, " \t\r\n") {
		return nil, fmt.Errorf("%s: expected a single token", path)
	}
	return &TokenAuthenticator{token: token, user: u}, nil
}

func (a *TokenAuthenticator) AuthenticateToken(ctx context.Context, value string) (*authenticator.Response, bool, error) {
	// Constant-time so response timing does not leak a token prefix.
	if subtle.ConstantTimeCompare([]byte(value), []byte(a.token)) != 1 {
		return nil, false, nil
	}
	return &authenticator.Response{User: a.user}, true, nil
}
