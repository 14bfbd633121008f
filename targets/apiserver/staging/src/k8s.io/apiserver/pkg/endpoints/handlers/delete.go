package handlers

import (
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/apiserver/pkg/registry/rest"
)

// DeleteResource returns the handler for DELETE on a named object. With
// allowsOptions, a non-empty body is read as DeleteOptions.
func DeleteResource(r rest.GracefulDeleter, allowsOptions bool, scope *RequestScope, admit admission.Interface) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		info, err := requestInfo(req)
		if err != nil {
			responsewriters.ErrorJSON(w, err)
			return
		}
		options := &metav1.DeleteOptions{}
		if allowsOptions && req.ContentLength != 0 && req.Body != nil {
			if err := readBody(req, scope, options); err != nil {
				responsewriters.ErrorJSON(w, err)
				return
			}
		}
		attrs := admission.NewAttributesRecord(nil, nil, info.Namespace, info.Name, scope.Resource, admission.Delete, requestUser(req))
		if err := admitRequest(req, admit, attrs, scope); err != nil {
			responsewriters.ErrorJSON(w, err)
			return
		}
		result, _, err := r.Delete(req.Context(), info.Name, nil, options)
		if err != nil {
			responsewriters.ErrorJSON(w, err)
			return
		}
		responsewriters.WriteObjectJSON(w, http.StatusOK, result)
	}
}
