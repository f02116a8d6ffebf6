package identity

import (
	"crypto/sha256"
	"sync"
	"time"
)

// verifiedCache remembers tokens whose signature this server already
// verified, keyed by the SHA-256 of the whole token, so a client reusing
// its token (every Azure SDK client does, for an hour) costs a hash, not an
// RSA verification and a JSON parse, per request. Expiry, not-before and
// audience are still checked on every use; a signing key is only retired
// after every token it signed has expired, so a cached entry never
// outlives its key's validity.
type verifiedCache struct {
	mu      sync.Mutex
	entries map[[32]byte]Claims
	max     int
}

func newVerifiedCache(max int) *verifiedCache {
	return &verifiedCache{entries: make(map[[32]byte]Claims, max), max: max}
}

func (c *verifiedCache) get(raw string) (Claims, [32]byte, bool) {
	h := sha256.Sum256([]byte(raw))
	c.mu.Lock()
	cl, ok := c.entries[h]
	c.mu.Unlock()
	return cl, h, ok
}

func (c *verifiedCache) put(h [32]byte, cl Claims, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		// Drop expired entries first; if none, drop an arbitrary half.
		dropped := 0
		for k, v := range c.entries {
			if v.Expiry == nil || !now.Before(v.Expiry.Time()) {
				delete(c.entries, k)
				dropped++
			}
		}
		if dropped == 0 {
			for k := range c.entries {
				delete(c.entries, k)
				if len(c.entries) <= c.max/2 {
					break
				}
			}
		}
	}
	c.entries[h] = cl
}
