// Package filters holds the per-request HTTP filters that run before any
// REST handler: request info, authentication and authorization.
package filters

import (
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/apiserver/pkg/endpoints/request"
)

// WithRequestInfo parses the request once so later filters can use it.
func WithRequestInfo(handler http.Handler, resolver *request.RequestInfoFactory) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		info, err := resolver.NewRequestInfo(req)
		if err != nil {
			responsewriters.ErrorJSON(w, apierrors.NewBadRequest(err.Error()))
			return
		}
		handler.ServeHTTP(w, req.WithContext(request.WithRequestInfo(req.Context(), info)))
	})
}
