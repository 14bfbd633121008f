package filters

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/apiserver/pkg/endpoints/request"
)

type recordAuthorizationMetricsFunc func(ctx context.Context, authorized authorizer.Decision, err error)

func recordAuthorizationMetrics(ctx context.Context, authorized authorizer.Decision, err error) {}

// WithAuthorization lets a request through only when a says DecisionAllow;
// a denial is 403 and an authorizer error 500.
func WithAuthorization(handler http.Handler, a authorizer.Authorizer) http.Handler {
	return withAuthorization(handler, a, recordAuthorizationMetrics)
}

func withAuthorization(handler http.Handler, a authorizer.Authorizer, metrics recordAuthorizationMetricsFunc) http.Handler {
	if a == nil {
		return handler
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctx := req.Context()
		attributes, err := GetAuthorizerAttributes(ctx)
		if err != nil {
			responsewriters.ErrorJSON(w, err)
			return
		}
		authorized, reason, err := a.Authorize(ctx, attributes)
		metrics(ctx, authorized, err)

		if authorized == authorizer.DecisionAllow {
			handler.ServeHTTP(w, req)
			return
		}
		if err != nil {
			responsewriters.ErrorJSON(w, err)
			return
		}
		if reason == "" {
			reason = "no rule allows this request"
		}
		name := attributes.GetName()
		if !attributes.IsResourceRequest() {
			name = attributes.GetPath()
		}
		responsewriters.ErrorJSON(w, apierrors.NewForbidden(attributes.GetResource(), name,
			fmt.Errorf("user %q cannot %s: %s", attributes.GetUser().GetName(), attributes.GetVerb(), reason)))
	})
}

// GetAuthorizerAttributes builds the authorization question from what
// earlier filters stored in the context. Tracer presets use it as a stable,
// non-closure anchor, so it must stay too large to inline (it is, by far).
func GetAuthorizerAttributes(ctx context.Context) (authorizer.Attributes, error) {
	attribs := authorizer.AttributesRecord{}

	user, ok := request.UserFrom(ctx)
	if !ok {
		return nil, errors.New("no user found in the request context")
	}
	attribs.User = user

	requestInfo, found := request.RequestInfoFrom(ctx)
	if !found {
		return nil, errors.New("no RequestInfo found in the context")
	}

	attribs.ResourceRequest = requestInfo.IsResourceRequest
	attribs.Path = requestInfo.Path
	attribs.Verb = requestInfo.Verb
	attribs.Namespace = requestInfo.Namespace
	attribs.Resource = requestInfo.Resource
	attribs.Name = requestInfo.Name

	return &attribs, nil
}
