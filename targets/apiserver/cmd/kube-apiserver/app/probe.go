package app

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// RunProbe makes one request and prints its HTTP status code, so tests can
// check authentication and authorization outcomes without curl.
func RunProbe(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	kubeconfigPath := fs.String("kubeconfig", "", "kubeconfig written by serve")
	path := fs.String("path", "/healthz", "request path, with query if any")
	method := fs.String("method", http.MethodGet, "HTTP method")
	noToken := fs.Bool("no-token", false, "omit the Authorization header")
	output := fs.String("output", "", "write the response body to this file")
	body := fs.String("body", "", "send this file as a JSON request body")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *kubeconfigPath == "" {
		return UsageError{"--kubeconfig is required"}
	}
	if !strings.HasPrefix(*path, "/") {
		return UsageError{"--path must start with /"}
	}
	kc, err := loadKubeconfig(*kubeconfigPath)
	if err != nil {
		return err
	}
	client, err := kc.httpClient(1)
	if err != nil {
		return err
	}
	var rd io.Reader
	if *body != "" {
		data, err := os.ReadFile(*body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(strings.ToUpper(*method), kc.Server+*path, rd)
	if err != nil {
		return err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if !*noToken {
		req.Header.Set("Authorization", "Bearer "+kc.Token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sink := io.Discard
	if *output != "" {
		f, err := os.Create(*output)
		if err != nil {
			return err
		}
		defer f.Close()
		sink = f
	}
	if _, err := io.Copy(sink, resp.Body); err != nil {
		return fmt.Errorf("reading response body: %w", err)
	}
	_, err = fmt.Fprintln(stdout, resp.StatusCode)
	return err
}

// UsageError is a command-line mistake; main prints the usage for it.
type UsageError struct{ msg string }

func (e UsageError) Error() string { return e.msg }

// parseFlags rejects positional arguments, which would otherwise be ignored.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fs.SetOutput(os.Stdout)
			fs.PrintDefaults()
			return err
		}
		return UsageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return UsageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}
