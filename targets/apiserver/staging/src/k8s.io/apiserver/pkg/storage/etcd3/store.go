// Package etcd3 is the storage.Interface backed by etcd. Its method names,
// receivers and signatures are the ones tracer presets attach to; the
// key argument is always the full etcd key.
package etcd3

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/storage"
)

// createDelay makes every Create take at least this long on top of the etcd
// round trip, so latency measurements have a known floor.
const createDelay = 2 * time.Millisecond

// maxAttempts bounds optimistic-concurrency retries under contention.
const maxAttempts = 32

type store struct {
	client  *Client
	newFunc func() runtime.Object
}

// New returns a store whose values decode into objects made by newFunc.
func New(c *Client, newFunc func() runtime.Object) storage.Interface {
	return &store{client: c, newFunc: newFunc}
}

// Create stores obj only if key does not exist yet.
func (s *store) Create(ctx context.Context, key string, obj, out runtime.Object, ttl uint64) error {
	if ttl != 0 {
		return storage.NewInvalidObjError(key, "ttl is not supported by this store")
	}
	if m, ok := obj.(runtime.MetaAccessor); ok && m.GetResourceVersion() != "" {
		return storage.NewInvalidObjError(key, "resourceVersion should not be set on objects to be created")
	}
	data, err := encode(obj)
	if err != nil {
		return err
	}
	zero := revision(0)
	resp, err := s.client.txn(ctx, &txnRequest{
		Compare: []compare{{Key: []byte(key), Target: "CREATE", Result: "EQUAL", CreateRevision: &zero}},
		Success: []requestOp{{Put: &putRequest{Key: []byte(key), Value: data}}},
	})
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return storage.NewKeyExistsError(key)
	}
	time.Sleep(createDelay)
	return decode(data, out, resp.Header.Revision)
}

// Get reads one key.
func (s *store) Get(ctx context.Context, key string, opts storage.GetOptions, out runtime.Object) error {
	resp, err := s.client.rangeKeys(ctx, &rangeRequest{Key: []byte(key)})
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 {
		if opts.IgnoreNotFound {
			return nil
		}
		return storage.NewKeyNotFoundError(key)
	}
	return decode(resp.Kvs[0].Value, out, resp.Kvs[0].ModRevision)
}

// GetList reads every object under key, which is treated as a directory.
func (s *store) GetList(ctx context.Context, key string, opts storage.ListOptions, listObj runtime.Object) error {
	list, ok := listObj.(runtime.ListObject)
	if !ok {
		return fmt.Errorf("GetList: %T is not a list object", listObj)
	}
	prefix := key
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	resp, err := s.client.rangeKeys(ctx, &rangeRequest{
		Key:      []byte(prefix),
		RangeEnd: prefixEnd([]byte(prefix)),
		Limit:    opts.Predicate.Limit,
	})
	if err != nil {
		return err
	}
	items := make([]runtime.Object, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		item := list.NewItem()
		if err := decode(kv.Value, item, kv.ModRevision); err != nil {
			return fmt.Errorf("GetList %s: %w", kv.Key, err)
		}
		items = append(items, item)
	}
	if err := list.SetItems(items); err != nil {
		return err
	}
	list.SetResourceVersion(strconv.FormatInt(int64(resp.Header.Revision), 10))
	return nil
}

// GuaranteedUpdate applies tryUpdate to the current value and writes the
// result only if nobody changed the key in between, retrying otherwise.
// cachedExistingObject is accepted for signature fidelity; the current
// value is always read from etcd.
func (s *store) GuaranteedUpdate(
	ctx context.Context, key string, destination runtime.Object, ignoreNotFound bool,
	preconditions *storage.Preconditions, tryUpdate storage.UpdateFunc, cachedExistingObject runtime.Object) error {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		current, modRev, err := s.read(ctx, key, ignoreNotFound)
		if err != nil {
			return err
		}
		if err := checkPreconditions(key, preconditions, current); err != nil {
			return err
		}
		updated, ttl, err := tryUpdate(current, storage.ResponseMeta{ResourceVersion: uint64(modRev)})
		if err != nil {
			return err
		}
		if ttl != nil && *ttl != 0 {
			return storage.NewInvalidObjError(key, "ttl is not supported by this store")
		}
		data, err := encode(updated)
		if err != nil {
			return err
		}
		rev := modRev
		resp, err := s.client.txn(ctx, &txnRequest{
			Compare: []compare{{Key: []byte(key), Target: "MOD", Result: "EQUAL", ModRevision: &rev}},
			Success: []requestOp{{Put: &putRequest{Key: []byte(key), Value: data}}},
		})
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return decode(data, destination, resp.Header.Revision)
		}
	}
	return storage.NewResourceVersionConflictsError(key, "too many concurrent updates")
}

// Delete removes key. With no preconditions and no validation it is a single
// deleterange; otherwise it is a read-check-delete guarded by mod_revision.
func (s *store) Delete(
	ctx context.Context, key string, out runtime.Object, preconditions *storage.Preconditions,
	validateDeletion storage.ValidateObjectFunc, cachedExistingObject runtime.Object) error {
	if preconditions == nil && validateDeletion == nil {
		resp, err := s.client.deleteRange(ctx, &deleteRangeRequest{Key: []byte(key), PrevKv: true})
		if err != nil {
			return err
		}
		if len(resp.PrevKvs) == 0 {
			return storage.NewKeyNotFoundError(key)
		}
		return decode(resp.PrevKvs[0].Value, out, resp.PrevKvs[0].ModRevision)
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		current, modRev, err := s.read(ctx, key, false)
		if err != nil {
			return err
		}
		if err := checkPreconditions(key, preconditions, current); err != nil {
			return err
		}
		if validateDeletion != nil {
			if err := validateDeletion(ctx, current); err != nil {
				return err
			}
		}
		rev := modRev
		resp, err := s.client.txn(ctx, &txnRequest{
			Compare: []compare{{Key: []byte(key), Target: "MOD", Result: "EQUAL", ModRevision: &rev}},
			Success: []requestOp{{DeleteRange: &deleteRangeRequest{Key: []byte(key), PrevKv: true}}},
		})
		if err != nil {
			return err
		}
		if !resp.Succeeded {
			continue
		}
		for _, r := range resp.Responses {
			if r.DeleteRange != nil && len(r.DeleteRange.PrevKvs) > 0 {
				kv := r.DeleteRange.PrevKvs[0]
				return decode(kv.Value, out, kv.ModRevision)
			}
		}
		return storage.NewKeyNotFoundError(key)
	}
	return storage.NewResourceVersionConflictsError(key, "too many concurrent updates")
}

// read returns the current object and its mod_revision (0 when absent and
// ignoreNotFound is set, in which case the object is freshly constructed).
func (s *store) read(ctx context.Context, key string, ignoreNotFound bool) (runtime.Object, revision, error) {
	resp, err := s.client.rangeKeys(ctx, &rangeRequest{Key: []byte(key)})
	if err != nil {
		return nil, 0, err
	}
	obj := s.newFunc()
	if len(resp.Kvs) == 0 {
		if !ignoreNotFound {
			return nil, 0, storage.NewKeyNotFoundError(key)
		}
		return obj, 0, nil
	}
	kv := resp.Kvs[0]
	if err := decode(kv.Value, obj, kv.ModRevision); err != nil {
		return nil, 0, err
	}
	return obj, kv.ModRevision, nil
}

func checkPreconditions(key string, p *storage.Preconditions, obj runtime.Object) error {
	if p == nil || p.ResourceVersion == nil {
		return nil
	}
	m, ok := obj.(runtime.MetaAccessor)
	if !ok {
		return storage.NewInvalidObjError(key, "object has no metadata")
	}
	if *p.ResourceVersion != m.GetResourceVersion() {
		return storage.NewResourceVersionConflictsError(key, fmt.Sprintf(
			"precondition failed: resourceVersion is %s, not %s", m.GetResourceVersion(), *p.ResourceVersion))
	}
	return nil
}

// encode serializes obj without its resourceVersion: etcd's revision is the
// source of truth and is filled back in on every read.
func encode(obj runtime.Object) ([]byte, error) {
	c := obj.DeepCopyObject()
	if m, ok := c.(runtime.MetaAccessor); ok {
		m.SetResourceVersion("")
	}
	return json.Marshal(c)
}

func decode(data []byte, out runtime.Object, rev revision) error {
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding stored object: %w", err)
	}
	if m, ok := out.(runtime.MetaAccessor); ok {
		m.SetResourceVersion(strconv.FormatInt(int64(rev), 10))
	}
	return nil
}
