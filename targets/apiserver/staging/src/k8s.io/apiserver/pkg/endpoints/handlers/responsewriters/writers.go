// Package responsewriters turns objects and errors into JSON responses.
package responsewriters

import (
	"encoding/json"
	"errors"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// WriteObjectJSON writes obj as the response body with the given status.
func WriteObjectJSON(w http.ResponseWriter, code int, obj interface{}) {
	data, err := json.Marshal(obj)
	if err != nil {
		code = http.StatusInternalServerError
		data = []byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"encoding failed","code":500}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(data, '\n'))
}

// ErrorJSON writes err as a Status; errors that are not StatusErrors are
// internal errors (500) by definition.
func ErrorJSON(w http.ResponseWriter, err error) {
	var se *apierrors.StatusError
	if !errors.As(err, &se) {
		se = apierrors.NewInternalError(err)
	}
	WriteObjectJSON(w, int(se.ErrStatus.Code), se.Status())
}
