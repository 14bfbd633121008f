// Package handlers holds the REST verb handlers. Each exported factory
// returns a closure; the closures (createHandler.func1,
// getResourceHandler.func1, ListResource.func1, UpdateResource.func1,
// DeleteResource.func1) are what run per request.
package handlers

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
)

// RequestScope is what every handler of one resource shares.
type RequestScope struct {
	Resource            string
	Kind                string
	ObjectInterfaces    admission.ObjectInterfaces
	MaxRequestBodyBytes int64
}

// readBody decodes a JSON request body into obj, enforcing the size limit.
func readBody(req *http.Request, scope *RequestScope, obj interface{}) error {
	limit := scope.MaxRequestBodyBytes
	if limit <= 0 {
		limit = 3 << 20
	}
	data, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		return apierrors.NewBadRequest(fmt.Sprintf("reading body: %v", err))
	}
	if int64(len(data)) > limit {
		return apierrors.NewBadRequest("request body too large")
	}
	if err := json.Unmarshal(data, obj); err != nil {
		return apierrors.NewBadRequest(fmt.Sprintf("decoding body: %v", err))
	}
	return nil
}

// objectIdentity fills in the namespace from the URL and rejects a body
// that names a different namespace or (when want != "") a different name.
func objectIdentity(obj runtime.Object, info *request.RequestInfo, want string) (string, error) {
	m, ok := obj.(interface {
		runtime.MetaAccessor
		SetNamespace(string)
	})
	if !ok {
		return "", apierrors.NewBadRequest("object has no metadata")
	}
	switch m.GetNamespace() {
	case "":
		m.SetNamespace(info.Namespace)
	case info.Namespace:
	default:
		return "", apierrors.NewBadRequest(fmt.Sprintf(
			"the namespace of the object (%s) does not match the namespace of the request (%s)", m.GetNamespace(), info.Namespace))
	}
	if want != "" && m.GetName() != want {
		return "", apierrors.NewBadRequest(fmt.Sprintf(
			"the name of the object (%s) does not match the name in the URL (%s)", m.GetName(), want))
	}
	if m.GetName() == "" {
		return "", apierrors.NewBadRequest("metadata.name is required")
	}
	return m.GetName(), nil
}

// admit runs the mutating and then the validating admission steps, each
// exactly once per request.
func admitRequest(req *http.Request, admit admission.Interface, attrs admission.Attributes, scope *RequestScope) error {
	ctx := req.Context()
	if mutating, ok := admit.(admission.MutationInterface); ok && mutating.Handles(attrs.GetOperation()) {
		if err := mutating.Admit(ctx, attrs, scope.ObjectInterfaces); err != nil {
			return err
		}
	}
	if validating, ok := admit.(admission.ValidationInterface); ok && validating.Handles(attrs.GetOperation()) {
		if err := validating.Validate(ctx, attrs, scope.ObjectInterfaces); err != nil {
			return err
		}
	}
	return nil
}

func requestUser(req *http.Request) user.Info {
	u, _ := request.UserFrom(req.Context())
	return u
}

func requestInfo(req *http.Request) (*request.RequestInfo, error) {
	info, ok := request.RequestInfoFrom(req.Context())
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("no RequestInfo found in the context"))
	}
	return info, nil
}
