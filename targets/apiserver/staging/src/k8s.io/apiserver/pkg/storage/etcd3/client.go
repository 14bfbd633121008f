package etcd3

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Client speaks etcd's v3 JSON gateway (grpc-gateway) so the test target
// needs nothing beyond the standard library. Keys and values travel as
// base64, which is how encoding/json already encodes []byte.
type Client struct {
	endpoint string
	http     *http.Client
}

// NewClient targets one etcd client URL such as http://127.0.0.1:2379.
func NewClient(endpoint string) (*Client, error) {
	endpoint = strings.TrimRight(endpoint, "/")
	if !strings.HasPrefix(endpoint, "http://") && !strings.HasPrefix(endpoint, "https://") {
		return nil, fmt.Errorf("etcd endpoint %q: want an http:// or https:// URL", endpoint)
	}
	return &Client{endpoint: endpoint, http: &http.Client{Timeout: 10 * time.Second}}, nil
}

// revision is an int64 the gateway encodes as a JSON string.
type revision int64

func (r revision) MarshalJSON() ([]byte, error) {
	return []byte(`"` + strconv.FormatInt(int64(r), 10) + `"`), nil
}

func (r *revision) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseInt(strings.Trim(string(b), `"`), 10, 64)
	if err != nil {
		return fmt.Errorf("etcd revision %s: %w", b, err)
	}
	*r = revision(v)
	return nil
}

type responseHeader struct {
	Revision revision `json:"revision"`
}

type keyValue struct {
	Key            []byte   `json:"key"`
	Value          []byte   `json:"value"`
	CreateRevision revision `json:"create_revision"`
	ModRevision    revision `json:"mod_revision"`
}

type rangeRequest struct {
	Key      []byte `json:"key"`
	RangeEnd []byte `json:"range_end,omitempty"`
	Limit    int64  `json:"limit,omitempty"`
}

type rangeResponse struct {
	Header responseHeader `json:"header"`
	Kvs    []keyValue     `json:"kvs"`
}

type putRequest struct {
	Key   []byte `json:"key"`
	Value []byte `json:"value"`
}

type deleteRangeRequest struct {
	Key    []byte `json:"key"`
	PrevKv bool   `json:"prev_kv,omitempty"`
}

type deleteRangeResponse struct {
	Header  responseHeader `json:"header"`
	PrevKvs []keyValue     `json:"prev_kvs"`
}

// compare always sends both revision fields' zero values explicitly when
// used, because "create_revision == 0" is the existence test for Create.
type compare struct {
	Key            []byte    `json:"key"`
	Target         string    `json:"target"`
	Result         string    `json:"result"`
	CreateRevision *revision `json:"create_revision,omitempty"`
	ModRevision    *revision `json:"mod_revision,omitempty"`
}

type requestOp struct {
	Put         *putRequest         `json:"request_put,omitempty"`
	Range       *rangeRequest       `json:"request_range,omitempty"`
	DeleteRange *deleteRangeRequest `json:"request_delete_range,omitempty"`
}

type txnRequest struct {
	Compare []compare   `json:"compare"`
	Success []requestOp `json:"success"`
	Failure []requestOp `json:"failure,omitempty"`
}

type responseOp struct {
	Range       *rangeResponse       `json:"response_range,omitempty"`
	DeleteRange *deleteRangeResponse `json:"response_delete_range,omitempty"`
}

type txnResponse struct {
	Header    responseHeader `json:"header"`
	Succeeded bool           `json:"succeeded"`
	Responses []responseOp   `json:"responses"`
}

// call POSTs one gateway request; a non-200 answer becomes an error that
// quotes etcd's message.
func (c *Client) call(ctx context.Context, path string, in, out interface{}) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("etcd %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("etcd %s: reading response: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd %s: HTTP %d: %s", path, resp.StatusCode, bytes.TrimSpace(data))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("etcd %s: decoding response: %w", path, err)
	}
	return nil
}

func (c *Client) rangeKeys(ctx context.Context, req *rangeRequest) (*rangeResponse, error) {
	var resp rangeResponse
	if err := c.call(ctx, "/v3/kv/range", req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

func (c *Client) txn(ctx context.Context, req *txnRequest) (*txnResponse, error) {
	var resp txnResponse
	if err := c.call(ctx, "/v3/kv/txn", req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Ping fails unless etcd answers a range request, so the server can refuse
// to start against a wrong --etcd-servers instead of failing every request.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.rangeKeys(ctx, &rangeRequest{Key: []byte("/registry/ping"), Limit: 1})
	return err
}

// prefixEnd is the smallest key greater than every key with this prefix.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	// All 0xff: etcd's convention for "to the end of the keyspace".
	return []byte{0}
}

func (c *Client) deleteRange(ctx context.Context, req *deleteRangeRequest) (*deleteRangeResponse, error) {
	var resp deleteRangeResponse
	if err := c.call(ctx, "/v3/kv/deleterange", req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}
