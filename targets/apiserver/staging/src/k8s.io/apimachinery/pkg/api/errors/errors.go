// Package errors maps apiserver failures to HTTP status codes. Every error a
// handler can return is a *StatusError so the response code is unambiguous.
package errors

import (
	"errors"
	"fmt"
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StatusError is an error carrying the Status sent to the client.
type StatusError struct {
	ErrStatus metav1.Status
}

func (e *StatusError) Error() string { return e.ErrStatus.Message }

// Status returns the response body for this error.
func (e *StatusError) Status() metav1.Status { return e.ErrStatus }

func newStatus(code int32, reason, format string, args ...interface{}) *StatusError {
	return &StatusError{ErrStatus: metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Message:  fmt.Sprintf(format, args...),
		Reason:   reason,
		Code:     code,
	}}
}

func NewNotFound(resource, name string) *StatusError {
	return newStatus(http.StatusNotFound, "NotFound", "%s %q not found", resource, name)
}

func NewAlreadyExists(resource, name string) *StatusError {
	return newStatus(http.StatusConflict, "AlreadyExists", "%s %q already exists", resource, name)
}

func NewConflict(resource, name string, err error) *StatusError {
	return newStatus(http.StatusConflict, "Conflict", "operation on %s %q failed: %v", resource, name, err)
}

func NewBadRequest(reason string) *StatusError {
	return newStatus(http.StatusBadRequest, "BadRequest", "%s", reason)
}

func NewForbidden(resource, name string, err error) *StatusError {
	return newStatus(http.StatusForbidden, "Forbidden", "%s %q is forbidden: %v", resource, name, err)
}

func NewUnauthorized(reason string) *StatusError {
	return newStatus(http.StatusUnauthorized, "Unauthorized", "%s", reason)
}

func NewMethodNotSupported(resource, verb string) *StatusError {
	return newStatus(http.StatusMethodNotAllowed, "MethodNotAllowed", "%s is not supported on resources of kind %q", verb, resource)
}

func NewInternalError(err error) *StatusError {
	return newStatus(http.StatusInternalServerError, "InternalError", "internal error: %v", err)
}

// ReasonForError returns the reason of a StatusError, or "" for other errors.
func ReasonForError(err error) string {
	var se *StatusError
	if errors.As(err, &se) {
		return se.ErrStatus.Reason
	}
	return ""
}

func IsNotFound(err error) bool      { return ReasonForError(err) == "NotFound" }
func IsAlreadyExists(err error) bool { return ReasonForError(err) == "AlreadyExists" }
func IsConflict(err error) bool      { return ReasonForError(err) == "Conflict" }
