// Package admission defines admission plugins and the chain that runs them
// between authorization and storage for mutating requests.
package admission

import (
	"context"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"
)

// Operation is the kind of change being admitted.
type Operation string

const (
	Create Operation = "CREATE"
	Update Operation = "UPDATE"
	Delete Operation = "DELETE"
)

// Attributes describes the object change being admitted.
type Attributes interface {
	GetName() string
	GetNamespace() string
	GetResource() string
	GetOperation() Operation
	GetObject() runtime.Object
	GetOldObject() runtime.Object
	GetUserInfo() user.Info
}

// ObjectInterfaces gives plugins access to object helpers; the test target
// needs none, but the argument keeps the real three-argument signature.
type ObjectInterfaces interface {
	GetObjectCreater() func() runtime.Object
}

// Interface is implemented by every admission plugin.
type Interface interface {
	Handles(operation Operation) bool
}

// MutationInterface plugins may change the object.
type MutationInterface interface {
	Interface
	Admit(ctx context.Context, a Attributes, o ObjectInterfaces) error
}

// ValidationInterface plugins may only reject.
type ValidationInterface interface {
	Interface
	Validate(ctx context.Context, a Attributes, o ObjectInterfaces) error
}

// Handler is embedded by plugins to implement Handles from a fixed set.
type Handler struct {
	operations map[Operation]struct{}
}

// NewHandler returns a Handler for the given operations.
func NewHandler(ops ...Operation) *Handler {
	h := &Handler{operations: make(map[Operation]struct{}, len(ops))}
	for _, op := range ops {
		h.operations[op] = struct{}{}
	}
	return h
}

func (h *Handler) Handles(operation Operation) bool {
	_, ok := h.operations[operation]
	return ok
}
