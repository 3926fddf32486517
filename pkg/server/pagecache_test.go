package server

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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

// Many clients paginating at once, each from its own resourceVersion (the
// pods change between their first pages), all finish: kube-apiserver's
// continue tokens hold for minutes however many LISTs are in flight, and
// the load suite's 40 paginated readers got 410 Gone when only 16 were
// kept.
func TestManyPaginatedListsAtOnce(t *testing.T) {
	_, res, cfg := startServer(t)
	cfg.QPS = -1 // no client-side rate limit
	pods := clientset(t, cfg).CoreV1().Pods("")
	const lists = 200
	var tokens []string
	for i := range lists {
		first, err := pods.List(t.Context(), metav1.ListOptions{Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, first.Continue)
		res.apply(eventModified, podRow(t, podSpec{"prod", "db-0", "n3", "Succeeded", map[string]string{"app": "db"}, uint64(111 + i)}))
	}
	for i, cont := range tokens {
		if _, err := pods.List(t.Context(), metav1.ListOptions{Limit: 2, Continue: cont}); err != nil {
			t.Fatalf("the second page of LIST %d of %d in flight: %v", i+1, lists, err)
		}
	}
}
