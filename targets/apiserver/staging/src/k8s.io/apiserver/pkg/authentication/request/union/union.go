// Package union tries several request authenticators in order.
package union

import (
	"fmt"
	"net/http"
	"strings"

	"k8s.io/apiserver/pkg/authentication/authenticator"
)

type unionAuthRequestHandler struct {
	Handlers []authenticator.Request
	// FailOnError stops at the first error instead of trying the rest.
	FailOnError bool
}

// New returns a request authenticator that succeeds with the first handler
// that accepts the request.
func New(authRequestHandlers ...authenticator.Request) authenticator.Request {
	if len(authRequestHandlers) == 1 {
		return authRequestHandlers[0]
	}
	return &unionAuthRequestHandler{Handlers: authRequestHandlers}
}

// AuthenticateRequest keeps every handler's error so a 401 can explain which
// mechanisms were tried.
func (authHandler *unionAuthRequestHandler) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	var errlist []error
	for _, currAuthRequestHandler := range authHandler.Handlers {
		resp, ok, err := currAuthRequestHandler.AuthenticateRequest(req)
		if err != nil {
			if authHandler.FailOnError {
				return resp, ok, err
			}
			errlist = append(errlist, err)
			continue
		}
		if ok {
			return resp, ok, err
		}
	}
	if len(errlist) == 0 {
		return nil, false, nil
	}
	msgs := make([]string, 0, len(errlist))
	for _, err := range errlist {
		msgs = append(msgs, err.Error())
	}
	return nil, false, fmt.Errorf("[%s]", strings.Join(msgs, ", "))
}
