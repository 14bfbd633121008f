package app

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
)

// loadReport is the single JSON line load prints. Field order is part of the
// contract with testkit.
type loadReport struct {
	Creates     int      `json:"creates"`
	Gets        int      `json:"gets"`
	Updates     int      `json:"updates"`
	Deletes     int      `json:"deletes"`
	MissingGets int      `json:"missing_gets"`
	Lists       int      `json:"lists,omitempty"`
	Keys        []string `json:"keys"`
	Errors      int      `json:"errors"`
}

type loader struct {
	client *http.Client
	kc     *kubeconfig
	ns     string
	errors atomic.Int64
	// logged caps stderr diagnostics so a broken server cannot flood it.
	logged atomic.Int64
}

// RunLoad issues exactly the requested numbers of requests, phase by phase,
// and nothing else: creates (distinct names), gets and updates cycling over
// the created names, deletes of the first created names, gets of names that
// never existed (expecting 404), then lists of the namespace.
func RunLoad(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	kubeconfigPath := fs.String("kubeconfig", "", "kubeconfig written by serve")
	ns := fs.String("namespace", "", "namespace of the configmaps")
	creates := fs.Int("creates", 0, "configmaps to create (distinct names)")
	gets := fs.Int("gets", 0, "gets of created configmaps")
	updates := fs.Int("updates", 0, "updates of created configmaps")
	deletes := fs.Int("deletes", 0, "deletes of created configmaps (at most --creates)")
	missing := fs.Int("missing-gets", 0, "gets of names that do not exist (expect 404)")
	lists := fs.Int("lists", 0, "lists of the namespace")
	concurrency := fs.Int("concurrency", 1, "requests in flight at once")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *kubeconfigPath == "" || *ns == "":
		return UsageError{"--kubeconfig and --namespace are required"}
	case *creates < 0 || *gets < 0 || *updates < 0 || *deletes < 0 || *missing < 0 || *lists < 0:
		return UsageError{"counts must not be negative"}
	case *concurrency < 1:
		return UsageError{"--concurrency must be at least 1"}
	case (*gets > 0 || *updates > 0) && *creates == 0:
		return UsageError{"--gets and --updates need --creates > 0"}
	case *deletes > *creates:
		return UsageError{"--deletes must not exceed --creates"}
	}

	kc, err := loadKubeconfig(*kubeconfigPath)
	if err != nil {
		return err
	}
	client, err := kc.httpClient(*concurrency)
	if err != nil {
		return err
	}
	runID, err := randomHex(4)
	if err != nil {
		return err
	}
	l := &loader{client: client, kc: kc, ns: *ns}
	name := func(i int) string { return fmt.Sprintf("load-%s-%d", runID, i) }
	base := "/api/v1/namespaces/" + url.PathEscape(*ns) + "/configmaps"

	created := make([]bool, *creates)
	l.phase(*creates, *concurrency, func(i int) {
		body := configMapJSON(name(i), *ns, map[string]string{"index": fmt.Sprint(i)})
		created[i] = l.expect(http.MethodPost, base, body, http.StatusCreated, name(i))
	})
	l.phase(*gets, *concurrency, func(i int) {
		n := name(i % *creates)
		l.expect(http.MethodGet, base+"/"+n, nil, http.StatusOK, n)
	})
	l.phase(*updates, *concurrency, func(i int) {
		n := name(i % *creates)
		body := configMapJSON(n, *ns, map[string]string{"index": fmt.Sprint(i % *creates), "update": fmt.Sprint(i)})
		l.expect(http.MethodPut, base+"/"+n, body, http.StatusOK, n)
	})
	l.phase(*deletes, *concurrency, func(i int) {
		l.expect(http.MethodDelete, base+"/"+name(i), nil, http.StatusOK, name(i))
	})
	l.phase(*missing, *concurrency, func(i int) {
		l.expect(http.MethodGet, fmt.Sprintf("%s/load-%s-missing-%d", base, runID, i), nil, http.StatusNotFound, "")
	})
	l.phase(*lists, *concurrency, func(i int) {
		l.expect(http.MethodGet, base, nil, http.StatusOK, "")
	})

	report := loadReport{
		Creates: *creates, Gets: *gets, Updates: *updates, Deletes: *deletes,
		MissingGets: *missing, Lists: *lists, Keys: []string{}, Errors: int(l.errors.Load()),
	}
	for i, ok := range created {
		if ok {
			report.Keys = append(report.Keys, "/registry/configmaps/"+*ns+"/"+name(i))
		}
	}
	line, err := json.Marshal(report)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
		return err
	}
	if report.Errors > 0 {
		return fmt.Errorf("%d request(s) had an unexpected outcome", report.Errors)
	}
	return nil
}

// phase runs n calls of fn on up to workers goroutines and returns when all
// are done, so phases never overlap.
func (l *loader) phase(n, workers int, fn func(i int)) {
	if n == 0 {
		return
	}
	if workers > n {
		workers = n
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// expect makes one request and counts an error unless the status is want
// and, when wantName is set, the returned object carries that name.
func (l *loader) expect(method, path string, body []byte, want int, wantName string) bool {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, l.kc.Server+path, rd)
	if err != nil {
		return l.fail("%s %s: %v", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+l.kc.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return l.fail("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return l.fail("%s %s: reading body: %v", method, path, err)
	}
	if resp.StatusCode != want {
		return l.fail("%s %s: HTTP %d, want %d: %s", method, path, resp.StatusCode, want, bytes.TrimSpace(data))
	}
	if wantName != "" {
		// The real kube-apiserver answers a DELETE of a configmap with a
		// Status whose details name the object, not with the object.
		var obj struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Details struct {
				Name string `json:"name"`
			} `json:"details"`
		}
		err := json.Unmarshal(data, &obj)
		named := obj.Metadata.Name == wantName || (method == http.MethodDelete && obj.Details.Name == wantName)
		if err != nil || !named {
			return l.fail("%s %s: response is not configmap %q: %s", method, path, wantName, bytes.TrimSpace(data))
		}
	}
	return true
}

func (l *loader) fail(format string, args ...interface{}) bool {
	l.errors.Add(1)
	if l.logged.Add(1) <= 20 {
		fmt.Fprintf(os.Stderr, "kube-apiserver load: "+format+"\n", args...)
	}
	return false
}

func configMapJSON(name, ns string, data map[string]string) []byte {
	obj := map[string]interface{}{
		"apiVersion": "v1",
		"kind":       "ConfigMap",
		"metadata":   map[string]string{"name": name, "namespace": ns},
		"data":       data,
	}
	b, _ := json.Marshal(obj)
	return b
}
