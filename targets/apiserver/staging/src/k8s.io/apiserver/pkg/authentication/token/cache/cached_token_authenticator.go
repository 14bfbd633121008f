// Package cache remembers token authentication results so the (possibly
// remote) delegate is not consulted on every request.
package cache

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
)

type cacheRecord struct {
	resp    *authenticator.Response
	ok      bool
	err     error
	expires time.Time
}

type cachedTokenAuthenticator struct {
	authenticator authenticator.Token

	successTTL time.Duration
	failureTTL time.Duration
	now        func() time.Time

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cacheRecord
}

// New caches positive results for successTTL and negative ones for failureTTL.
func New(authenticator authenticator.Token, successTTL, failureTTL time.Duration) authenticator.Token {
	return &cachedTokenAuthenticator{
		authenticator: authenticator,
		successTTL:    successTTL,
		failureTTL:    failureTTL,
		now:           time.Now,
		cache:         make(map[[sha256.Size]byte]cacheRecord),
	}
}

// AuthenticateToken keys the cache by a hash so raw tokens are never held in
// memory longer than the request.
func (a *cachedTokenAuthenticator) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	key := sha256.Sum256([]byte(token))
	now := a.now()

	a.mu.Lock()
	rec, hit := a.cache[key]
	a.mu.Unlock()
	if hit && now.Before(rec.expires) {
		return rec.resp, rec.ok, rec.err
	}

	resp, ok, err := a.authenticator.AuthenticateToken(ctx, token)
	ttl := a.failureTTL
	if ok && err == nil {
		ttl = a.successTTL
	}
	if ttl > 0 {
		a.mu.Lock()
		a.cache[key] = cacheRecord{resp: resp, ok: ok, err: err, expires: now.Add(ttl)}
		a.mu.Unlock()
	}
	return resp, ok, err
}
