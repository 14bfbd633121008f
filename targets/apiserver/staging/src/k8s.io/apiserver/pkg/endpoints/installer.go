// Package endpoints routes resource requests to the REST handlers.
package endpoints

import (
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/endpoints/handlers"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
)

type resourceHandlers struct {
	create, get, list, update, del http.HandlerFunc
}

// APIInstaller dispatches /api/v1/namespaces/{ns}/{resource}[/{name}] by
// the RequestInfo the filter chain parsed; the handlers are built once.
type APIInstaller struct {
	resources map[string]*resourceHandlers
}

// NewAPIInstaller returns an installer with no resources.
func NewAPIInstaller() *APIInstaller {
	return &APIInstaller{resources: make(map[string]*resourceHandlers)}
}

// Install registers one namespaced resource.
func (a *APIInstaller) Install(resource, kind string, storage rest.Storage, admit admission.Interface) {
	scope := &handlers.RequestScope{
		Resource:         resource,
		Kind:             kind,
		ObjectInterfaces: admission.NewObjectInterfaces(storage.New),
	}
	a.resources[resource] = &resourceHandlers{
		create: handlers.CreateResource(storage, scope, admit),
		get:    handlers.GetResource(storage, scope),
		list:   handlers.ListResource(storage, scope),
		update: handlers.UpdateResource(storage, scope, admit),
		del:    handlers.DeleteResource(storage, true, scope, admit),
	}
}

func (a *APIInstaller) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	info, ok := request.RequestInfoFrom(req.Context())
	if !ok || !info.IsResourceRequest {
		responsewriters.ErrorJSON(w, apierrors.NewNotFound("path", req.URL.Path))
		return
	}
	h := a.resources[info.Resource]
	if h == nil {
		responsewriters.ErrorJSON(w, apierrors.NewNotFound("resource", info.Resource))
		return
	}
	var handler http.HandlerFunc
	switch info.Verb {
	case "create":
		if info.Name == "" {
			handler = h.create
		}
	case "get":
		handler = h.get
	case "list":
		handler = h.list
	case "update":
		handler = h.update
	case "delete":
		if info.Name != "" {
			handler = h.del
		}
	}
	if handler == nil {
		responsewriters.ErrorJSON(w, apierrors.NewMethodNotSupported(info.Resource, fmt.Sprintf("%s %s", req.Method, req.URL.Path)))
		return
	}
	handler(w, req)
}
