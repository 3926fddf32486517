package persist

import (
	"context"
	"testing"

	"github.com/krm-project/krm/pkg/agent/aggregate"
	"github.com/krm-project/krm/pkg/store"
)

// restoredStore is a flakyStore whose event stream behaves like Redis's:
// an event not above the newest ID ever appended is refused.
type restoredStore struct {
	*flakyStore
	top    uint64
	resets int
}

func (s *restoredStore) AppendEvents(_ context.Context, evs []store.Event) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	skipped := 0
	for _, ev := range evs {
		if ev.Row.ResourceVersion <= s.top {
			skipped++
			continue
		}
		s.top = ev.Row.ResourceVersion
		s.events = append(s.events, ev)
	}
	return skipped, nil
}

func (s *restoredStore) EventsTop(context.Context, string, string) (uint64, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.top == 0 {
		return 0, "", nil
	}
	return s.top, "top", nil
}

func (s *restoredStore) ResetEvents(_ context.Context, _, _, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id != "top" || s.top == 0 {
		return false, nil
	}
	s.top, s.events = 0, nil
	s.resets++
	return true, nil
}

func (s *restoredStore) stored(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range s.events {
		if ev.Row.Name == name {
			return true
		}
	}
	return false
}

// TestRedisWriterAcrossAnEtcdRestore: a running agent whose cluster is
// restored to a backup older than its last LIST. Its next LIST is older than
// the last one; from then on the events are the restored cluster's, newer
// than nothing queued before: the stream, ahead, is dropped, and the new
// events are queued and appended again. Before the fix both the writer
// (taking them for replays) and Redis (refusing the IDs) dropped them until
// the cluster's resourceVersion passed the old one.
func TestRedisWriterAcrossAnEtcdRestore(t *testing.T) {
	s := &restoredStore{flakyStore: newFlakyStore()}
	w, r, m := newTestWriter(t, s)
	w.WriteFrames(t.Context(), r)
	r.agg.Verify(listed(4000, row("a", 3900, store.Verified), row("b", 3950, store.Verified)))
	w.WriteFrames(t.Context(), r)
	for _, rv := range []uint64{4100, 5000} {
		c := row("before", rv, store.Streamed)
		r.agg.Apply(modified, c, aggregate.Received)
		w.Event(r, modified, c)
	}
	waitUntil(t, "the events before the restore in the stream", func() bool { return s.stored("before") })

	// etcd restored to a backup at 3000.
	r.agg.Verify(listed(3000, row("a", 2900, store.Verified)))
	w.WriteFrames(t.Context(), r)
	s.mu.Lock()
	resets := s.resets
	s.mu.Unlock()
	if resets != 1 {
		t.Errorf("the stream ahead of the restored cluster was reset %d times, want once", resets)
	}
	if got := metricValue(t, m.streamResets.WithLabelValues("pods")); got != 1 {
		t.Errorf("krm_store_event_stream_resets_total = %v, want 1", got)
	}
	c := row("after", 3001, store.Streamed)
	r.agg.Apply(added, c, aggregate.Received)
	w.Event(r, added, c)
	waitUntil(t, "the restored cluster's event in the stream", func() bool { return s.stored("after") })
}
