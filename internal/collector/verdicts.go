package collector

import (
	"sync"
	"time"
)

// verdictCache keeps the API server's answers (a TokenReview's, an access
// review's) for a while, by key, so that a client asking every few seconds
// costs one review per TTL. It is bounded: at maxVerdicts entries, the
// expired ones are dropped, and if none has expired it starts over.
type verdictCache[K comparable, V any] struct {
	mu      sync.Mutex
	entries map[K]cachedVerdict[V]
}

// maxVerdicts bounds a verdictCache: one per recorded pod's token for the
// collector, one per reader's token and action for the results API.
const maxVerdicts = 10000

type cachedVerdict[V any] struct {
	value   V
	expires time.Time
}

// get returns the verdict kept for key, if it has not expired at now.
func (c *verdictCache[K, V]) get(key K, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.entries[key]
	if !ok || !now.Before(v.expires) {
		var zero V
		return zero, false
	}
	return v.value, true
}

// put keeps value for key until now+ttl.
func (c *verdictCache[K, V]) put(key K, value V, now time.Time, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[K]cachedVerdict[V]{}
	}
	if len(c.entries) >= maxVerdicts {
		for k, v := range c.entries {
			if !now.Before(v.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= maxVerdicts {
			clear(c.entries)
		}
	}
	c.entries[key] = cachedVerdict[V]{value: value, expires: now.Add(ttl)}
}
