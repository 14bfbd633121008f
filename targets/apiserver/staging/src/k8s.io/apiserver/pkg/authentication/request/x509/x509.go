// Package x509 authenticates requests by TLS client certificate. The test
// target's clients never present one, so this authenticator always declines;
// it exists so the union has the same shape as a real apiserver's.
package x509

import (
	"crypto/x509"
	"net/http"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

// Authenticator accepts client certificates signed by a known CA.
type Authenticator struct {
	opts x509.VerifyOptions
}

// New returns an authenticator that trusts client certificates from roots.
func New(roots *x509.CertPool) *Authenticator {
	return &Authenticator{opts: x509.VerifyOptions{
		Roots:     roots,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}}
}

func (a *Authenticator) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 {
		return nil, false, nil
	}
	opts := a.opts
	opts.Intermediates = x509.NewCertPool()
	for _, c := range req.TLS.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	leaf := req.TLS.PeerCertificates[0]
	if _, err := leaf.Verify(opts); err != nil {
		return nil, false, err
	}
	return &authenticator.Response{User: &user.DefaultInfo{
		Name:   leaf.Subject.CommonName,
		Groups: leaf.Subject.Organization,
	}}, true, nil
}
