package request

import (
	"net/http"
	"strings"
)

// RequestInfo is what authorization and routing need to know about a
// request, parsed once from its method and path.
type RequestInfo struct {
	IsResourceRequest bool
	Path              string
	Verb              string
	APIPrefix         string
	APIVersion        string
	Namespace         string
	Resource          string
	Name              string
	Parts             []string
}

// RequestInfoFactory parses paths of the form
// /api/v1/namespaces/{namespace}/{resource}[/{name}]; anything else is a
// non-resource request.
type RequestInfoFactory struct{}

// NewRequestInfo never fails for well-formed HTTP requests; an unknown shape
// simply yields a non-resource request.
func (r *RequestInfoFactory) NewRequestInfo(req *http.Request) (*RequestInfo, error) {
	info := &RequestInfo{
		Path: req.URL.Path,
		Verb: strings.ToLower(req.Method),
	}
	parts := splitPath(req.URL.Path)
	if len(parts) < 5 || parts[0] != "api" || parts[1] != "v1" || parts[2] != "namespaces" || len(parts) > 6 {
		return info, nil
	}
	info.IsResourceRequest = true
	info.APIPrefix = parts[0]
	info.APIVersion = parts[1]
	info.Namespace = parts[3]
	info.Resource = parts[4]
	if len(parts) == 6 {
		info.Name = parts[5]
	}
	info.Parts = parts[4:]

	switch req.Method {
	case http.MethodPost:
		info.Verb = "create"
	case http.MethodGet, http.MethodHead:
		info.Verb = "get"
		if info.Name == "" {
			info.Verb = "list"
		}
	case http.MethodPut:
		info.Verb = "update"
	case http.MethodPatch:
		info.Verb = "patch"
	case http.MethodDelete:
		info.Verb = "delete"
	}
	return info, nil
}

func splitPath(path string) []string {
	path = strings.Trim(path, "/")
	if path == "" {
		return nil
	}
	return strings.Split(path, "/")
}
