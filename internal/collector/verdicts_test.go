package collector

import (
	"testing"
	"time"
)

func TestVerdictCache(t *testing.T) {
	var c verdictCache[int, string]
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	if _, ok := c.get(1, now); ok {
		t.Fatal("an empty cache has a verdict")
	}
	c.put(1, "allowed", now, time.Minute)
	if v, ok := c.get(1, now.Add(59*time.Second)); !ok || v != "allowed" {
		t.Errorf("within its TTL: %q, %v", v, ok)
	}
	if _, ok := c.get(1, now.Add(time.Minute)); ok {
		t.Error("a verdict outlives its TTL")
	}

	// Full: the expired verdicts go first, the fresh ones stay.
	for i := range maxVerdicts - 1 {
		c.put(100+i, "old", now, time.Second)
	}
	later := now.Add(2 * time.Second)
	c.put(2, "fresh", later, time.Minute)
	if len(c.entries) != 2 {
		t.Errorf("%d verdicts after dropping the expired ones, want 2", len(c.entries))
	}
	if v, ok := c.get(1, later); !ok || v != "allowed" {
		t.Errorf("an unexpired verdict was dropped: %q, %v", v, ok)
	}
	// Full of unexpired verdicts: it starts over.
	for i := range maxVerdicts {
		c.put(100+i, "new", later, time.Minute)
	}
	if len(c.entries) > maxVerdicts {
		t.Errorf("%d verdicts, more than %d", len(c.entries), maxVerdicts)
	}
}
