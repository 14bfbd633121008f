package app

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// kubeconfig is the subset of a kubeconfig this program reads back: one
// cluster with inline CA data and one user with a bearer token.
type kubeconfig struct {
	Server string
	CAPEM  []byte
	Token  string
}

func writeKubeconfig(path, server string, caPEM []byte, token string) error {
	const tmpl = `apiVersion: v1
kind: Config
clusters:
- name: ktrace
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: ktrace-admin
  user:
    token: %s
contexts:
- name: ktrace
  context:
    cluster: ktrace
    user: ktrace-admin
current-context: ktrace
preferences: {}
`
	data := fmt.Sprintf(tmpl, server, base64.StdEncoding.EncodeToString(caPEM), token)
	return writeFileAtomic(path, []byte(data), 0o600)
}

// kubeconfigKeys are the keys read; every other key is accepted and ignored
// unless listed in unsupportedKeys.
var kubeconfigKeys = map[string]bool{
	"apiVersion": true, "kind": true, "server": true,
	"certificate-authority-data": true, "token": true,
}

// unsupportedKeys would change how to connect; silently ignoring them would
// make a failure baffling, so they are rejected by name.
var unsupportedKeys = []string{
	"certificate-authority", "client-certificate", "client-certificate-data",
	"client-key", "client-key-data", "tokenFile", "insecure-skip-tls-verify", "exec", "auth-provider",
}

// loadKubeconfig parses the single-cluster, single-user layout written by
// writeKubeconfig, line by line. It is deliberately strict: each wanted key
// must occur exactly once.
func loadKubeconfig(path string) (*kubeconfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading kubeconfig: %w", err)
	}
	values := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimSpace(sc.Text())
		line = strings.TrimPrefix(line, "- ")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%s:%d: expected \"key: value\"", path, lineNo)
		}
		k = strings.TrimSpace(k)
		v = unquote(strings.TrimSpace(v))
		for _, bad := range unsupportedKeys {
			if k == bad {
				return nil, fmt.Errorf("%s:%d: %q is not supported; use inline certificate-authority-data and a token", path, lineNo, k)
			}
		}
		if !kubeconfigKeys[k] {
			continue
		}
		if _, dup := values[k]; dup {
			return nil, fmt.Errorf("%s:%d: %q appears more than once; only one cluster and one user are supported", path, lineNo, k)
		}
		values[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading kubeconfig: %w", err)
	}
	if values["kind"] != "Config" || values["apiVersion"] != "v1" {
		return nil, fmt.Errorf("%s: not a kubeconfig (want apiVersion: v1 and kind: Config)", path)
	}
	for _, k := range []string{"server", "certificate-authority-data", "token"} {
		if values[k] == "" {
			return nil, fmt.Errorf("%s: missing %q", path, k)
		}
	}
	u, err := url.Parse(values["server"])
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%s: server %q is not an https:// URL", path, values["server"])
	}
	caPEM, err := base64.StdEncoding.DecodeString(values["certificate-authority-data"])
	if err != nil {
		return nil, fmt.Errorf("%s: certificate-authority-data is not base64: %w", path, err)
	}
	return &kubeconfig{Server: strings.TrimRight(values["server"], "/"), CAPEM: caPEM, Token: values["token"]}, nil
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

// httpClient trusts only the kubeconfig's CA; connections parameter sizes
// the idle pool so concurrent workers reuse connections.
func (k *kubeconfig) httpClient(connections int) (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(k.CAPEM) {
		return nil, fmt.Errorf("certificate-authority-data holds no PEM certificate")
	}
	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: connections,
		IdleConnTimeout:     30 * time.Second,
	}
	return &http.Client{Transport: transport, Timeout: 60 * time.Second}, nil
}

// writeFileAtomic makes readers see either no file or the whole file,
// because tests poll for these files while the server starts.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
