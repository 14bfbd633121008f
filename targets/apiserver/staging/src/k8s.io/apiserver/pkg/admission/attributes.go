package admission

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"
)

type attributesRecord struct {
	name      string
	namespace string
	resource  string
	operation Operation
	object    runtime.Object
	oldObject runtime.Object
	userInfo  user.Info
}

// NewAttributesRecord describes one admission request.
func NewAttributesRecord(object, oldObject runtime.Object, namespace, name, resource string, operation Operation, userInfo user.Info) Attributes {
	return &attributesRecord{
		name:      name,
		namespace: namespace,
		resource:  resource,
		operation: operation,
		object:    object,
		oldObject: oldObject,
		userInfo:  userInfo,
	}
}

func (r *attributesRecord) GetName() string              { return r.name }
func (r *attributesRecord) GetNamespace() string         { return r.namespace }
func (r *attributesRecord) GetResource() string          { return r.resource }
func (r *attributesRecord) GetOperation() Operation      { return r.operation }
func (r *attributesRecord) GetObject() runtime.Object    { return r.object }
func (r *attributesRecord) GetOldObject() runtime.Object { return r.oldObject }
func (r *attributesRecord) GetUserInfo() user.Info       { return r.userInfo }

// objectInterfaces is the trivial ObjectInterfaces handed to plugins.
type objectInterfaces struct{ newFunc func() runtime.Object }

// NewObjectInterfaces wraps a constructor for the resource's type.
func NewObjectInterfaces(newFunc func() runtime.Object) ObjectInterfaces {
	return objectInterfaces{newFunc: newFunc}
}

func (o objectInterfaces) GetObjectCreater() func() runtime.Object { return o.newFunc }
