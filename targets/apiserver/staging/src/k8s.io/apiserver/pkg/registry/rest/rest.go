// Package rest defines the verbs a REST storage may implement; the handlers
// call them through these interfaces.
package rest

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// ValidateObjectFunc may reject an object before it is written.
type ValidateObjectFunc func(ctx context.Context, obj runtime.Object) error

// ValidateObjectUpdateFunc may reject an update given the old object.
type ValidateObjectUpdateFunc func(ctx context.Context, obj, old runtime.Object) error

// UpdatedObjectInfo computes the new object from the stored one.
type UpdatedObjectInfo interface {
	UpdatedObject(ctx context.Context, oldObj runtime.Object) (newObj runtime.Object, err error)
}

type Creater interface {
	New() runtime.Object
	Create(ctx context.Context, obj runtime.Object, createValidation ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error)
}

type Getter interface {
	Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error)
}

type Lister interface {
	NewList() runtime.Object
	List(ctx context.Context, options *metav1.ListOptions) (runtime.Object, error)
}

type Updater interface {
	New() runtime.Object
	Update(ctx context.Context, name string, objInfo UpdatedObjectInfo, createValidation ValidateObjectFunc,
		updateValidation ValidateObjectUpdateFunc, forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error)
}

type GracefulDeleter interface {
	Delete(ctx context.Context, name string, deleteValidation ValidateObjectFunc, options *metav1.DeleteOptions) (runtime.Object, bool, error)
}

// Storage is everything the installer needs from one resource.
type Storage interface {
	Creater
	Getter
	Lister
	Updater
	GracefulDeleter
}

type defaultUpdatedObjectInfo struct {
	obj runtime.Object
}

// DefaultUpdatedObjectInfo replaces the stored object with obj.
func DefaultUpdatedObjectInfo(obj runtime.Object) UpdatedObjectInfo {
	return &defaultUpdatedObjectInfo{obj: obj}
}

func (i *defaultUpdatedObjectInfo) UpdatedObject(ctx context.Context, oldObj runtime.Object) (runtime.Object, error) {
	return i.obj.DeepCopyObject(), nil
}
