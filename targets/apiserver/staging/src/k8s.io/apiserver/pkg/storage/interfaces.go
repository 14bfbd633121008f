// Package storage is the contract between the generic registry and a
// storage backend. Argument types mirror the real apiserver so the Go
// register ABI places every argument where a tracer expects it.
package storage

import (
	"context"

	"k8s.io/apimachinery/pkg/runtime"
)

// ResponseMeta is what the backend knows about the current stored value.
type ResponseMeta struct {
	TTL             int64
	ResourceVersion uint64
}

// UpdateFunc computes the new object from the current one. It may be called
// more than once when a concurrent writer wins the race.
type UpdateFunc func(input runtime.Object, res ResponseMeta) (output runtime.Object, ttl *uint64, err error)

// ValidateObjectFunc may veto an operation on the current object.
type ValidateObjectFunc func(ctx context.Context, obj runtime.Object) error

// Preconditions must hold on the stored object for an update or delete.
type Preconditions struct {
	UID             *string
	ResourceVersion *string
}

// GetOptions tunes Get.
type GetOptions struct {
	IgnoreNotFound  bool
	ResourceVersion string
}

// SelectionPredicate narrows a list. Carried for signature fidelity (it makes
// ListOptions too large for registers); the test target only honours Limit.
type SelectionPredicate struct {
	Label    string
	Field    string
	Limit    int64
	Continue string
}

// ListOptions tunes GetList.
type ListOptions struct {
	ResourceVersion      string
	ResourceVersionMatch string
	Predicate            SelectionPredicate
	Recursive            bool
}

// Interface is a key/value object store; keys are full etcd keys such as
// /registry/configmaps/NS/NAME.
type Interface interface {
	Create(ctx context.Context, key string, obj, out runtime.Object, ttl uint64) error
	Delete(ctx context.Context, key string, out runtime.Object, preconditions *Preconditions,
		validateDeletion ValidateObjectFunc, cachedExistingObject runtime.Object) error
	Get(ctx context.Context, key string, opts GetOptions, out runtime.Object) error
	GetList(ctx context.Context, key string, opts ListOptions, listObj runtime.Object) error
	GuaranteedUpdate(ctx context.Context, key string, destination runtime.Object, ignoreNotFound bool,
		preconditions *Preconditions, tryUpdate UpdateFunc, cachedExistingObject runtime.Object) error
}
