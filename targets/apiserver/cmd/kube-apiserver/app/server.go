// Package app implements the three modes of the test target: serve (the
// apiserver itself), load (a request generator with exact counts) and
// probe (a single request that reports its status code).
package app

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apiserver/pkg/admission"
	admissionmetrics "k8s.io/apiserver/pkg/admission/metrics"
	"k8s.io/apiserver/pkg/admission/plugin/namespace/lifecycle"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/group"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	"k8s.io/apiserver/pkg/authentication/request/union"
	"k8s.io/apiserver/pkg/authentication/request/x509"
	"k8s.io/apiserver/pkg/authentication/token/cache"
	"k8s.io/apiserver/pkg/authentication/token/tokenfile"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	authzunion "k8s.io/apiserver/pkg/authorization/union"
	"k8s.io/apiserver/pkg/endpoints"
	"k8s.io/apiserver/pkg/endpoints/filters"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/storage/etcd3"
	"k8s.io/kubernetes/pkg/apis/core"
	"k8s.io/kubernetes/pkg/ktracetest"
	"k8s.io/kubernetes/plugin/pkg/admission/limitranger"
	"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac"
)

// AdminUser is the identity bound to the generated token.
const AdminUser = "ktrace-admin"

// maxRecurseDepth keeps /ktrace/recurse far below the 1 GB stack limit.
const maxRecurseDepth = 100000

// RunServe runs the server until SIGTERM or SIGINT.
func RunServe(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	etcdServers := fs.String("etcd-servers", "", "etcd client URL (the first of a comma-separated list is used)")
	bind := fs.String("bind", "127.0.0.1:0", "address to listen on")
	dataDir := fs.String("data-dir", "", "directory for ca.crt, token and kubeconfig")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *etcdServers == "" || *dataDir == "" {
		return UsageError{"--etcd-servers and --data-dir are required"}
	}

	etcd, err := etcd3.NewClient(strings.Split(*etcdServers, ",")[0])
	if err != nil {
		return err
	}
	pingCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err = etcd.Ping(pingCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("etcd is not usable: %w", err)
	}

	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return err
	}
	certs, err := generateCerts()
	if err != nil {
		return fmt.Errorf("generating certificates: %w", err)
	}
	token, err := randomHex(32)
	if err != nil {
		return err
	}
	tokenPath := filepath.Join(*dataDir, "token")
	if err := writeFileAtomic(filepath.Join(*dataDir, "ca.crt"), certs.caPEM, 0o644); err != nil {
		return err
	}
	if err := writeFileAtomic(tokenPath, []byte(token+"\n"), 0o600); err != nil {
		return err
	}

	authn, err := buildAuthenticator(tokenPath, certs)
	if err != nil {
		return err
	}
	handler := buildHandlerChain(buildMux(etcd), authn, buildAuthorizer())

	ln, err := net.Listen("tcp", *bind)
	if err != nil {
		return err
	}
	serverURL := "https://" + ln.Addr().String()
	if err := writeKubeconfig(filepath.Join(*dataDir, "kubeconfig"), serverURL, certs.caPEM, token); err != nil {
		ln.Close()
		return err
	}

	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(os.Stderr, "kube-apiserver: ", log.LstdFlags),
	}
	tlsLn := tls.NewListener(ln, &tls.Config{
		Certificates: []tls.Certificate{certs.server},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(tlsLn) }()

	// The READY line is the start-up contract with testkit: one line,
	// flushed, only after the listener accepts connections.
	w := bufio.NewWriter(stdout)
	fmt.Fprintf(w, "READY %s\n", serverURL)
	if err := w.Flush(); err != nil {
		return err
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-served:
		return err
	case <-sigs:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// buildAuthenticator mirrors the real nesting: group adder → union →
// {x509, bearer token → cache → token file}.
func buildAuthenticator(tokenPath string, certs *servingCerts) (authenticator.Request, error) {
	tokens, err := tokenfile.NewFromFile(tokenPath, &user.DefaultInfo{Name: AdminUser, UID: "ktrace-admin-uid"})
	if err != nil {
		return nil, err
	}
	bearer := bearertoken.New(cache.New(tokens, 10*time.Second, 10*time.Second))
	return group.NewAuthenticatedGroupAdder(union.New(x509.New(certs.caPool), bearer)), nil
}

// buildAuthorizer grants the admin user everything; anyone else (there is
// no other identity today) gets a 403.
func buildAuthorizer() authorizer.Authorizer {
	return authzunion.New(rbac.New(rbac.Binding{
		User: AdminUser,
		Rules: []rbac.PolicyRule{{
			Verbs:           []string{"*"},
			Resources:       []string{"*"},
			NonResourceURLs: []string{"*"},
		}},
	}))
}

func buildAdmission() admission.Interface {
	return admission.NewChainHandler(
		admissionmetrics.WithControllerMetrics(lifecycle.NewLifecycle(), lifecycle.PluginName),
		admissionmetrics.WithControllerMetrics(limitranger.NewLimitRanger(), limitranger.PluginName),
	)
}

func buildMux(etcd *etcd3.Client) *http.ServeMux {
	configmaps := &registry.Store{
		NewFunc:                  core.NewConfigMap,
		NewListFunc:              core.NewConfigMapList,
		DefaultQualifiedResource: "configmaps",
		Storage:                  etcd3.New(etcd, core.NewConfigMap),
	}
	api := endpoints.NewAPIInstaller()
	api.Install("configmaps", "ConfigMap", configmaps, buildAdmission())

	mux := http.NewServeMux()
	mux.Handle("/api/", api)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("/ktrace/recurse", recurseHandler)
	mux.HandleFunc("/ktrace/lookup", lookupHandler)
	mux.HandleFunc("/ktrace/spin", spinHandler)
	// Index serves the named runtime profiles (heap, goroutine, allocs,
	// block, mutex, threadcreate); the rest need their own handlers.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// buildHandlerChain orders the filters as the real apiserver does: request
// info, then authentication, then authorization, then the mux.
func buildHandlerChain(mux http.Handler, authn authenticator.Request, authz authorizer.Authorizer) http.Handler {
	h := filters.WithAuthorization(mux, authz)
	h = filters.WithAuthentication(h, authn, filters.Unauthorized(), nil)
	return filters.WithRequestInfo(h, &request.RequestInfoFactory{})
}

// recurseHandler runs ktracetest.Recurse(depth) on a fresh goroutine, whose
// stack starts small and must grow, and waits for it.
func recurseHandler(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	depth, err := strconv.Atoi(req.URL.Query().Get("depth"))
	if err != nil || depth < 1 || depth > maxRecurseDepth {
		http.Error(w, fmt.Sprintf("depth must be an integer in [1, %d]", maxRecurseDepth), http.StatusBadRequest)
		return
	}
	done := make(chan int)
	go func() { done <- ktracetest.Recurse(depth) }()
	result := <-done
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]int{"depth": depth, "calls": depth, "result": result})
}

// lookupHandler runs ktracetest.Lookup(key, depth) on the request's own
// goroutine.
func lookupHandler(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	key := req.URL.Query().Get("key")
	depth, err := strconv.Atoi(req.URL.Query().Get("depth"))
	if err != nil || depth < 0 || depth > 10 {
		http.Error(w, "depth must be an integer in [0, 10]", http.StatusBadRequest)
		return
	}
	result := ktracetest.Lookup(key, depth)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]int{"depth": depth, "result": result})
}

// spinHandler runs ktracetest.Spin(key, ms) on the request's own goroutine.
func spinHandler(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	ms, err := strconv.Atoi(req.URL.Query().Get("ms"))
	if err != nil || ms < 1 || ms > 60000 {
		http.Error(w, "ms must be an integer in [1, 60000]", http.StatusBadRequest)
		return
	}
	calls := ktracetest.Spin(req.URL.Query().Get("key"), time.Duration(ms)*time.Millisecond)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]int{"ms": ms, "calls": calls})
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
