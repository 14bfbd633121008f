package handlers

import (
	"context"
	"net/http"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/apiserver/pkg/registry/rest"
)

// getterFunc fetches one named object.
type getterFunc func(ctx context.Context, name string, req *http.Request) (runtime.Object, error)

// getResourceHandler is shared by every "get one object" endpoint.
func getResourceHandler(scope *RequestScope, getter getterFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		info, err := requestInfo(req)
		if err != nil {
			responsewriters.ErrorJSON(w, err)
			return
		}
		result, err := getter(req.Context(), info.Name, req)
		if err != nil {
			responsewriters.ErrorJSON(w, err)
			return
		}
		responsewriters.WriteObjectJSON(w, http.StatusOK, result)
	}
}

// GetResource returns the handler for GET on a named object.
func GetResource(r rest.Getter, scope *RequestScope) http.HandlerFunc {
	return getResourceHandler(scope,
		func(ctx context.Context, name string, req *http.Request) (runtime.Object, error) {
			options := metav1.GetOptions{ResourceVersion: req.URL.Query().Get("resourceVersion")}
			return r.Get(ctx, name, &options)
		})
}

// ListResource returns the handler for GET on a collection.
func ListResource(r rest.Lister, scope *RequestScope) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		options := metav1.ListOptions{ResourceVersion: q.Get("resourceVersion")}
		if s := q.Get("limit"); s != "" {
			limit, err := strconv.ParseInt(s, 10, 64)
			if err != nil || limit < 0 {
				responsewriters.ErrorJSON(w, apierrors.NewBadRequest("limit must be a non-negative integer"))
				return
			}
			options.Limit = limit
		}
		result, err := r.List(req.Context(), &options)
		if err != nil {
			responsewriters.ErrorJSON(w, err)
			return
		}
		responsewriters.WriteObjectJSON(w, http.StatusOK, result)
	}
}
