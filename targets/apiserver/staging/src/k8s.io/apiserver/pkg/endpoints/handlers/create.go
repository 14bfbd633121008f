package handlers

import (
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/apiserver/pkg/registry/rest"
)

// CreateResource returns the handler for POST on a collection.
func CreateResource(r rest.Creater, scope *RequestScope, admission admission.Interface) http.HandlerFunc {
	return createHandler(r, scope, admission, false)
}

func createHandler(r rest.Creater, scope *RequestScope, admit admission.Interface, includeName bool) http.HandlerFunc {
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
		want := ""
		if includeName {
			want = info.Name
		}
		name, err := objectIdentity(obj, info, want)
		if err != nil {
			responsewriters.ErrorJSON(w, err)
			return
		}
		attrs := admission.NewAttributesRecord(obj, nil, info.Namespace, name, scope.Resource, admission.Create, requestUser(req))
		if err := admitRequest(req, admit, attrs, scope); err != nil {
			responsewriters.ErrorJSON(w, err)
			return
		}
		result, err := r.Create(req.Context(), obj, nil, &metav1.CreateOptions{})
		if err != nil {
			responsewriters.ErrorJSON(w, err)
			return
		}
		responsewriters.WriteObjectJSON(w, http.StatusCreated, result)
	}
}
