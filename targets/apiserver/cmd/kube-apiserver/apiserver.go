// Command kube-apiserver is the ktrace test target: a small HTTPS server with
// kube-apiserver's package paths and symbols, plus the client modes the
// integration tests drive it with. See targets/apiserver/README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

const usage = `usage:
  kube-apiserver serve --etcd-servers URL --data-dir DIR [--bind 127.0.0.1:0]
  kube-apiserver load  --kubeconfig PATH --namespace NS [--creates N] [--gets N] [--updates N]
                       [--deletes N] [--missing-gets N] [--lists N] [--concurrency C]
  kube-apiserver probe --kubeconfig PATH [--path /healthz] [--method GET] [--no-token] [--output FILE]
                       [--body FILE]
  kube-apiserver certs --dir DIR
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = app.RunServe(os.Args[2:], os.Stdout)
	case "load":
		err = app.RunLoad(os.Args[2:], os.Stdout)
	case "probe":
		err = app.RunProbe(os.Args[2:], os.Stdout)
	case "certs":
		err = app.RunCerts(os.Args[2:], os.Stdout)
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "kube-apiserver: unknown mode %q\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	var usageErr app.UsageError
	if errors.As(err, &usageErr) {
		fmt.Fprintf(os.Stderr, "kube-apiserver %s: %v\n%s", os.Args[1], err, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kube-apiserver %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
