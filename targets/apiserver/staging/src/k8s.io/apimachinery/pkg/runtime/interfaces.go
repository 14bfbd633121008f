// Package runtime holds the minimal object model the storage and registry
// layers are written against. Only the interface shape matters to a tracer:
// a runtime.Object argument occupies two registers (itab, data).
package runtime

// Object is anything the apiserver can store. Concrete types live in API
// packages; the storage layer only needs to copy them.
type Object interface {
	DeepCopyObject() Object
}

// MetaAccessor exposes the metadata the storage layer maintains on every
// stored object (resource version) without depending on concrete types.
type MetaAccessor interface {
	GetName() string
	GetNamespace() string
	GetResourceVersion() string
	SetResourceVersion(rv string)
}

// ListObject is a list the storage layer can fill from a range read. NewItem
// exists so the store can decode each value without knowing the item type.
type ListObject interface {
	Object
	NewItem() Object
	SetItems(items []Object) error
	SetResourceVersion(rv string)
}
