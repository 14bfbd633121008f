// Package v1 carries the metadata shared by every object, trimmed to the
// fields the test target actually reads or writes.
package v1

// TypeMeta identifies the kind of a serialized object.
type TypeMeta struct {
	Kind       string `json:"kind,omitempty"`
	APIVersion string `json:"apiVersion,omitempty"`
}

// ObjectMeta is the per-object metadata kept in etcd.
type ObjectMeta struct {
	Name              string `json:"name,omitempty"`
	Namespace         string `json:"namespace,omitempty"`
	UID               string `json:"uid,omitempty"`
	ResourceVersion   string `json:"resourceVersion,omitempty"`
	CreationTimestamp string `json:"creationTimestamp,omitempty"`
}

func (m *ObjectMeta) GetName() string              { return m.Name }
func (m *ObjectMeta) GetNamespace() string         { return m.Namespace }
func (m *ObjectMeta) GetResourceVersion() string   { return m.ResourceVersion }
func (m *ObjectMeta) SetResourceVersion(rv string) { m.ResourceVersion = rv }

// ListMeta is the metadata of a list response.
type ListMeta struct {
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// Status is the body of every error response, shaped like Kubernetes' so
// clients can read reason and code.
type Status struct {
	TypeMeta `json:",inline"`
	Status   string `json:"status,omitempty"`
	Message  string `json:"message,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Code     int32  `json:"code,omitempty"`
}

const (
	StatusSuccess = "Success"
	StatusFailure = "Failure"
)

// CreateOptions, GetOptions, ListOptions, UpdateOptions and DeleteOptions are
// the per-call options of the REST verbs, reduced to what is honoured here.
type CreateOptions struct {
	DryRun []string `json:"dryRun,omitempty"`
}

type GetOptions struct {
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

type ListOptions struct {
	ResourceVersion string `json:"resourceVersion,omitempty"`
	Limit           int64  `json:"limit,omitempty"`
}

type UpdateOptions struct {
	DryRun []string `json:"dryRun,omitempty"`
}

// Preconditions must hold on the stored object for a delete to happen.
type Preconditions struct {
	UID             *string `json:"uid,omitempty"`
	ResourceVersion *string `json:"resourceVersion,omitempty"`
}

type DeleteOptions struct {
	Preconditions *Preconditions `json:"preconditions,omitempty"`
}
