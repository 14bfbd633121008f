package handlers

import (
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/apiserver/pkg/registry/rest"
)

// UpdateResource returns the handler for PUT on a named object. The old
// object is not read before admission, so admission sees a nil old object;
// that keeps the storage layer at one call per request.
func UpdateResource(r rest.Updater, scope *RequestScope, admit admission.Interface) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		info, err := requestInfo(req)
		if err != nil {
			responsewriters.ErrorJSON(w, err)
			return
		}
		obj := r.New()
		if err := readBody(req, scope, obj); err != nil {
			responsewriters.ErrorJSON(w, err)
			return
		}
		if _, err := objectIdentity(obj, info, info.Name); err != nil {
			responsewriters.ErrorJSON(w, err)
			return
		}
		attrs := admission.NewAttributesRecord(obj, nil, info.Namespace, info.Name, scope.Resource, admission.Update, requestUser(req))
		if err := admitRequest(req, admit, attrs, scope); err != nil {
			responsewriters.ErrorJSON(w, err)
			return
		}
		result, _, err := r.Update(req.Context(), info.Name, rest.DefaultUpdatedObjectInfo(obj), nil, nil, false, &metav1.UpdateOptions{})
		if err != nil {
			responsewriters.ErrorJSON(w, err)
			return
		}
		responsewriters.WriteObjectJSON(w, http.StatusOK, result)
	}
}
