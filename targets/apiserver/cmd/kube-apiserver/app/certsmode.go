package app

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// RunCerts writes what the real kube-apiserver needs to serve on loopback
// with certificates a client can verify: a fresh CA (ca.crt), a serving
// certificate for 127.0.0.1 and localhost signed by it (serving.crt,
// serving.key), and an RSA key for signing service-account tokens (sa.key).
// Keys are written 0600.
func RunCerts(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory to write ca.crt, serving.crt, serving.key and sa.key into")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return UsageError{"--dir is required"}
	}
	certs, err := generateCerts()
	if err != nil {
		return fmt.Errorf("generating certificates: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(certs.server.PrivateKey)
	if err != nil {
		return err
	}
	var chain []byte
	for _, der := range certs.server.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generating the service-account key: %w", err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"ca.crt", certs.caPEM, 0o644},
		{"serving.crt", chain, 0o644},
		{"serving.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
		{"sa.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}), 0o600},
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(*dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintln(stdout, *dir)
	return err
}
