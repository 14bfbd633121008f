package filters

import (
	"net/http"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/apiserver/pkg/endpoints/request"
)

// AuthMetrics counts authentication outcomes; the deferred recorder in the
// request closure is what the compiler names withAuthentication.func1.1.
type AuthMetrics struct {
	Success, Failure, Error atomic.Uint64
	LatencyNanos            atomic.Uint64
}

// AuthenticationMetrics collects the server's authentication outcomes.
var AuthenticationMetrics = &AuthMetrics{}

type recordMetrics func(m *AuthMetrics, ok bool, err error, elapsed time.Duration)

func recordAuthenticationMetrics(m *AuthMetrics, ok bool, err error, elapsed time.Duration) {
	switch {
	case err != nil:
		m.Error.Add(1)
	case ok:
		m.Success.Add(1)
	default:
		m.Failure.Add(1)
	}
	m.LatencyNanos.Add(uint64(elapsed))
}

// WithAuthentication rejects requests that no authenticator accepts by
// handing them to failed, and otherwise stores the user in the context.
func WithAuthentication(handler http.Handler, auth authenticator.Request, failed http.Handler, apiAuds []string) http.Handler {
	return withAuthentication(handler, auth, failed, apiAuds, recordAuthenticationMetrics)
}

func withAuthentication(handler http.Handler, auth authenticator.Request, failed http.Handler, apiAuds []string, metrics recordMetrics) http.Handler {
	if auth == nil {
		return handler
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		authenticationStart := time.Now()
		resp, ok, err := auth.AuthenticateRequest(req)
		defer func() {
			metrics(AuthenticationMetrics, ok, err, time.Since(authenticationStart))
		}()
		if err != nil || !ok {
			failed.ServeHTTP(w, req)
			return
		}
		if len(apiAuds) > 0 && len(resp.Audiences) > 0 && !intersects(apiAuds, resp.Audiences) {
			failed.ServeHTTP(w, req)
			return
		}
		handler.ServeHTTP(w, req.WithContext(request.WithUser(req.Context(), resp.User)))
	})
}

func intersects(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// Unauthorized is the failed handler: 401 with a Status body.
func Unauthorized() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		responsewriters.ErrorJSON(w, apierrors.NewUnauthorized("Unauthorized"))
	})
}
