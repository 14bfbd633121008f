// Package registry is the generic REST storage: it turns REST verbs into
// storage.Interface calls, one storage call per verb, and maps storage
// errors to API errors.
package registry

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage"
)

// Store implements rest.Storage for one namespaced resource.
type Store struct {
	NewFunc     func() runtime.Object
	NewListFunc func() runtime.Object

	// DefaultQualifiedResource names the resource in errors and keys.
	DefaultQualifiedResource string

	// Storage is an interface so calls into etcd3 are never inlined.
	Storage storage.Interface
}

var _ rest.Storage = &Store{}

func (e *Store) New() runtime.Object     { return e.NewFunc() }
func (e *Store) NewList() runtime.Object { return e.NewListFunc() }

// KeyRootFunc is the etcd key prefix of the request's namespace.
func (e *Store) KeyRootFunc(ctx context.Context) string {
	return "/registry/" + e.DefaultQualifiedResource + "/" + genericapirequest.NamespaceValue(ctx)
}

// KeyFunc is the etcd key of one object.
func (e *Store) KeyFunc(ctx context.Context, name string) (string, error) {
	if genericapirequest.NamespaceValue(ctx) == "" {
		return "", apierrors.NewBadRequest("namespace is required")
	}
	if !validName(name) {
		return "", apierrors.NewBadRequest(fmt.Sprintf("invalid name %q", name))
	}
	return e.KeyRootFunc(ctx) + "/" + name, nil
}

func (e *Store) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	m, ok := obj.(runtime.MetaAccessor)
	if !ok {
		return nil, apierrors.NewBadRequest("object has no metadata")
	}
	if createValidation != nil {
		if err := createValidation(ctx, obj); err != nil {
			return nil, err
		}
	}
	key, err := e.KeyFunc(ctx, m.GetName())
	if err != nil {
		return nil, err
	}
	out := e.NewFunc()
	if err := e.Storage.Create(ctx, key, obj, out, 0); err != nil {
		return nil, e.interpret(err, m.GetName())
	}
	return out, nil
}

func (e *Store) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	key, err := e.KeyFunc(ctx, name)
	if err != nil {
		return nil, err
	}
	out := e.NewFunc()
	opts := storage.GetOptions{}
	if options != nil {
		opts.ResourceVersion = options.ResourceVersion
	}
	if err := e.Storage.Get(ctx, key, opts, out); err != nil {
		return nil, e.interpret(err, name)
	}
	return out, nil
}

func (e *Store) List(ctx context.Context, options *metav1.ListOptions) (runtime.Object, error) {
	list := e.NewListFunc()
	opts := storage.ListOptions{Recursive: true}
	if options != nil {
		opts.ResourceVersion = options.ResourceVersion
		opts.Predicate.Limit = options.Limit
	}
	if err := e.Storage.GetList(ctx, e.KeyRootFunc(ctx), opts, list); err != nil {
		return nil, e.interpret(err, "")
	}
	return list, nil
}

// Update never creates: a missing object is NotFound, as for configmaps.
func (e *Store) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc,
	updateValidation rest.ValidateObjectUpdateFunc, forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	key, err := e.KeyFunc(ctx, name)
	if err != nil {
		return nil, false, err
	}
	out := e.NewFunc()
	err = e.Storage.GuaranteedUpdate(ctx, key, out, false, nil,
		func(existing runtime.Object, res storage.ResponseMeta) (runtime.Object, *uint64, error) {
			obj, err := objInfo.UpdatedObject(ctx, existing)
			if err != nil {
				return nil, nil, err
			}
			newMeta, ok := obj.(runtime.MetaAccessor)
			if !ok {
				return nil, nil, apierrors.NewBadRequest("object has no metadata")
			}
			oldMeta := existing.(runtime.MetaAccessor)
			// An explicit resourceVersion makes the update conditional.
			if rv := newMeta.GetResourceVersion(); rv != "" && rv != oldMeta.GetResourceVersion() {
				return nil, nil, apierrors.NewConflict(e.DefaultQualifiedResource, name,
					fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
			}
			if updateValidation != nil {
				if err := updateValidation(ctx, obj, existing); err != nil {
					return nil, nil, err
				}
			}
			return obj, nil, nil
		}, nil)
	if err != nil {
		return nil, false, e.interpret(err, name)
	}
	return out, false, nil
}

func (e *Store) Delete(ctx context.Context, name string, deleteValidation rest.ValidateObjectFunc, options *metav1.DeleteOptions) (runtime.Object, bool, error) {
	key, err := e.KeyFunc(ctx, name)
	if err != nil {
		return nil, false, err
	}
	var preconditions *storage.Preconditions
	if options != nil && options.Preconditions != nil {
		preconditions = &storage.Preconditions{UID: options.Preconditions.UID, ResourceVersion: options.Preconditions.ResourceVersion}
	}
	out := e.NewFunc()
	var validate storage.ValidateObjectFunc
	if deleteValidation != nil {
		validate = storage.ValidateObjectFunc(deleteValidation)
	}
	if err := e.Storage.Delete(ctx, key, out, preconditions, validate, nil); err != nil {
		return nil, false, e.interpret(err, name)
	}
	return out, true, nil
}

// interpret keeps API errors as they are and maps storage errors to their
// HTTP equivalents; anything else is an internal error.
func (e *Store) interpret(err error, name string) error {
	if apierrors.ReasonForError(err) != "" {
		return err
	}
	switch {
	case storage.IsNotFound(err):
		return apierrors.NewNotFound(e.DefaultQualifiedResource, name)
	case storage.IsExist(err):
		return apierrors.NewAlreadyExists(e.DefaultQualifiedResource, name)
	case storage.IsConflict(err):
		return apierrors.NewConflict(e.DefaultQualifiedResource, name, err)
	case storage.IsInvalidObj(err):
		return apierrors.NewBadRequest(err.Error())
	}
	return apierrors.NewInternalError(err)
}

// validName accepts RFC 1123 subdomains, so names are safe inside etcd keys.
func validName(name string) bool {
	if name == "" || len(name) > 253 || strings.HasPrefix(name, ".") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
