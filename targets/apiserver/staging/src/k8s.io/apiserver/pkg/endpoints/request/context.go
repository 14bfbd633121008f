// Package request carries per-request facts (user, namespace, parsed
// request info) through the handler chain in the context.
package request

import (
	"context"

	"k8s.io/apiserver/pkg/authentication/user"
)

type key int

const (
	userKey key = iota
	requestInfoKey
)

// WithUser records the authenticated user.
func WithUser(parent context.Context, u user.Info) context.Context {
	return context.WithValue(parent, userKey, u)
}

// UserFrom returns the authenticated user, if any.
func UserFrom(ctx context.Context) (user.Info, bool) {
	u, ok := ctx.Value(userKey).(user.Info)
	return u, ok
}

// WithRequestInfo records the parsed request.
func WithRequestInfo(parent context.Context, info *RequestInfo) context.Context {
	return context.WithValue(parent, requestInfoKey, info)
}

// RequestInfoFrom returns the parsed request, if any.
func RequestInfoFrom(ctx context.Context) (*RequestInfo, bool) {
	info, ok := ctx.Value(requestInfoKey).(*RequestInfo)
	return info, ok
}

// NamespaceValue is the request's namespace, or "" for cluster-scoped paths.
func NamespaceValue(ctx context.Context) string {
	if info, ok := RequestInfoFrom(ctx); ok {
		return info.Namespace
	}
	return ""
}
