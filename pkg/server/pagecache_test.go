package server

import (
	"context"
	"testing"
	"time"

	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/store"
)

// A paginated LIST's snapshot pins the rows changed since; it is let go
// pageTTL after its last page even when no other LIST comes to expire it.
func TestPageCacheExpiresWithoutReads(t *testing.T) {
	c := newPageCache(time.Now)
	c.ttl = 50 * time.Millisecond
	c.put("pods", store.Aggregated, &api.Snapshot{Header: store.Header{ResourceVersion: 7}})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		c.mu.Lock()
		n := len(c.entries)
		c.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the page cache still holds %d snapshots long after their time to live, with no LIST since", n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
