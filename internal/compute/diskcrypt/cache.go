package diskcrypt

import (
	"sync"
	"time"
)

// Cache holds unwrapped disks' Ciphers for at most a TTL, so a customer
// who disables or revokes a key stops disk reads within that time: after
// it, the next access unwraps again through the customer's vault and fails.
// The cache lives in memory only, so a restart empties it. Entries are
// keyed by the caller (disk ID, wrapping key ID and wrapped bytes), so a
// re-wrapped DEK is a new entry and the old one simply expires.
type Cache struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	entries map[string]cacheEntry
	sweepAt time.Time
}

type cacheEntry struct {
	c       *Cipher
	expires time.Time
}

// NewCache returns a cache whose entries live for ttl; ttl <= 0 disables
// caching (every access unwraps). now is the clock (time.Now if nil).
func NewCache(ttl time.Duration, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{ttl: ttl, now: now, entries: map[string]cacheEntry{}}
}

// Get returns a live entry.
func (c *Cache) Get(key string) (*Cipher, bool) {
	if c.ttl <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	if !c.now().Before(e.expires) {
		delete(c.entries, key)
		return nil, false
	}
	return e.c, true
}

// Put stores ciph under key for the TTL (from now, never extended by Get).
func (c *Cache) Put(key string, ciph *Cipher) {
	if c.ttl <= 0 {
		return
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[key] = cacheEntry{c: ciph, expires: now.Add(c.ttl)}
	if now.After(c.sweepAt) { // drop expired entries now and then so the map stays small
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		c.sweepAt = now.Add(c.ttl)
	}
}

// Forget drops every entry whose key starts with prefix (a deleted disk,
// or an operator's explicit flush).
func (c *Cache) Forget(prefix string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			delete(c.entries, k)
		}
	}
}
