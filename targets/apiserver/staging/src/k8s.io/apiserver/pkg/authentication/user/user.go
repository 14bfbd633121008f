// Package user describes an authenticated identity.
package user

// Info is the identity the authenticators attach to a request.
type Info interface {
	GetName() string
	GetUID() string
	GetGroups() []string
}

// DefaultInfo is the plain implementation of Info.
type DefaultInfo struct {
	Name   string
	UID    string
	Groups []string
}

func (i *DefaultInfo) GetName() string     { return i.Name }
func (i *DefaultInfo) GetUID() string      { return i.UID }
func (i *DefaultInfo) GetGroups() []string { return i.Groups }

const (
	AllAuthenticated = "system:authenticated"
	SystemPrivileged = "system:masters"
)
