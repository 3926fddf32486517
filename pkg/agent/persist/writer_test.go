package persist

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/krm-project/krm/pkg/agent/aggregate"
	"github.com/krm-project/krm/pkg/agent/aggregate/aggregatetest"
	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/store"
)

// flakyStore is a store that can fail like Redis: go down (every call
// fails), come back, lose its data, or hang on appends.
type flakyStore struct {
	mu     sync.Mutex
	down   bool
	frames map[store.Source]*store.Frame
	events []store.Event
	// hang, when non-nil, holds AppendEvents until it closes.
	hang chan struct{}
}

var errDown = errors.New("connection refused")

func newFlakyStore() *flakyStore { return &flakyStore{frames: map[store.Source]*store.Frame{}} }

func (s *flakyStore) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

func (s *flakyStore) lose() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frames = map[store.Source]*store.Frame{}
}

func (s *flakyStore) frame(src store.Source) *store.Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frames[src]
}

func (s *flakyStore) PutFrames(_ context.Context, verified, aggregated *store.Frame) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errDown
	}
	s.frames[store.Verified], s.frames[store.Aggregated] = verified, aggregated
	return nil
}

func (s *flakyStore) GetFrames(context.Context, string, string) (*store.Frame, *store.Frame, error) {
	return nil, nil, store.ErrNotFound
}

func (s *flakyStore) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errDown
	}
	return nil
}

func (s *flakyStore) HasFrame(_ context.Context, _, _ string, src store.Source) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return false, errDown
	}
	return s.frames[src] != nil, nil
}

func (s *flakyStore) AppendEvents(ctx context.Context, evs []store.Event) (int, error) {
	s.mu.Lock()
	hang := s.hang
	s.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return 0, errDown
	}
	s.events = append(s.events, evs...)
	return 0, nil
}

func (s *flakyStore) Events(context.Context, string, string, uint64, int64) ([]store.Event, error) {
	return nil, nil
}

func (s *flakyStore) TrimEvents(context.Context, string, string, uint64) error { return nil }

var t0 = aggregatetest.T0

const (
	added    = api.EventAdded
	modified = api.EventModified
)

// testResource is a resource as the runner is one: a name and its
// aggregator.
type testResource struct {
	name string
	agg  *aggregate.Aggregator
}

func (r *testResource) ResourceName() string              { return r.name }
func (r *testResource) Aggregator() *aggregate.Aggregator { return r.agg }

var row = aggregatetest.Row

func listed(rv uint64, rows ...*store.Row) aggregate.Verification {
	return aggregate.Verification{Rows: rows, RV: rv, At: t0}
}

// newTestWriter returns a Writer on s with one runner for pods whose
// first LIST has landed, and starts the writer until the test ends.
func newTestWriter(t *testing.T, s store.Store) (*Writer, *testResource, *Metrics) {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(s, "redis", "test", slog.New(slog.NewTextHandler(t.Output(), nil)), m)
	w.CheckEvery = 20 * time.Millisecond
	r := &testResource{name: "pods", agg: aggregate.New("test", "pods", func() time.Time { return t0 })}
	w.Add(r)
	r.agg.Verify(listed(10, row("a", 5, store.Verified), row("b", 6, store.Verified)))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Start(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return w, r, m
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// names lists a frame's rows by name and resourceVersion.
func names(f *store.Frame) map[string]uint64 {
	out := map[string]uint64{}
	for _, r := range f.Rows {
		out[r.Name] = r.ResourceVersion
	}
	return out
}

// TestStoreWriterNeverBlocksTheWatch: with the store hanging, queueing
// events returns at once, and what does not fit is counted, not waited for.
func TestStoreWriterNeverBlocksTheWatch(t *testing.T) {
	s := newFlakyStore()
	s.hang = make(chan struct{})
	defer close(s.hang)
	w, r, m := newTestWriter(t, s)
	const n = eventQueueSize + 2*eventBatch
	start := time.Now()
	for i := range n {
		w.Event(r, added, row("x", uint64(100+i), store.Streamed))
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("queueing %d events for a hanging store took %s", n, took)
	}
	// The writer holds at most one batch; the queue the rest.
	dropped := metricValue(t, m.eventsDropped.WithLabelValues("pods", dropQueueFull))
	if dropped < n-eventQueueSize-eventBatch || dropped > n-eventQueueSize {
		t.Errorf("%v events dropped for a full queue, want between %d and %d", dropped, n-eventQueueSize-eventBatch, n-eventQueueSize)
	}
}

// TestStoreWriterDegradedAndRecovered: a store that goes down is reported
// (status, metric), events are dropped and counted instead of queued, and
// once it answers the current frames, outage included, are written again.
func TestStoreWriterDegradedAndRecovered(t *testing.T) {
	s := newFlakyStore()
	w, r, m := newTestWriter(t, s)
	w.WriteFrames(t.Context(), r)
	if diff := cmp.Diff(map[string]uint64{"a": 5, "b": 6}, names(s.frame(store.Aggregated))); diff != "" {
		t.Fatalf("the first frame written (-want +got):\n%s", diff)
	}

	s.setDown(true)
	waitUntil(t, "the writer to notice the store is down", func() bool { return !w.Status().Healthy })
	if st := w.Status(); st.Kind != "redis" || st.Message == "" {
		t.Errorf("status while down: %+v", st)
	}
	if got := metricValue(t, m.healthy); got != 0 {
		t.Errorf("krm_store_healthy = %v while down", got)
	}
	// Changes during the outage: the views take them, the store cannot.
	c := row("c", 11, store.Streamed)
	r.agg.Apply(added, c, aggregate.Received)
	w.Event(r, added, c)
	if got := metricValue(t, m.eventsDropped.WithLabelValues("pods", dropUnhealthy)); got != 1 {
		t.Errorf("%v events dropped while the store is down, want 1", got)
	}
	w.WriteFrames(t.Context(), r) // a LIST landing meanwhile
	if _, has := names(s.frame(store.Aggregated))["c"]; has {
		t.Fatal("a frame reached a store that is down")
	}

	s.setDown(false)
	waitUntil(t, "the writer to recover", func() bool { return w.Status().Healthy })
	if got := metricValue(t, m.healthy); got != 1 {
		t.Errorf("krm_store_healthy = %v after recovering", got)
	}
	if diff := cmp.Diff(map[string]uint64{"a": 5, "b": 6, "c": 11}, names(s.frame(store.Aggregated))); diff != "" {
		t.Errorf("the aggregated frame written again (-want +got):\n%s", diff)
	}
	// Events go to the store again.
	d := row("d", 12, store.Streamed)
	w.Event(r, added, d)
	waitUntil(t, "the event of d in the store", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.events) == 1 && s.events[0].Row == d
	})
}

// TestStoreWriterRewritesLostFrames: a store that answers but lost the
// frames (a Redis restarted between two checks) gets them again.
func TestStoreWriterRewritesLostFrames(t *testing.T) {
	s := newFlakyStore()
	w, r, _ := newTestWriter(t, s)
	w.WriteFrames(t.Context(), r)
	s.lose()
	waitUntil(t, "the frames written again", func() bool {
		return s.frame(store.Verified) != nil && s.frame(store.Aggregated) != nil
	})
	if !w.Status().Healthy {
		t.Errorf("status after rewriting lost frames: %+v", w.Status())
	}
}

// TestStoreWriterSkipsReplayedEvents: a resumed watch that replays events
// already queued does not queue them twice.
func TestStoreWriterSkipsReplayedEvents(t *testing.T) {
	s := newFlakyStore()
	w, r, _ := newTestWriter(t, s)
	for _, rv := range []uint64{20, 21, 20, 21, 22} {
		w.Event(r, modified, row("a", rv, store.Streamed))
	}
	waitUntil(t, "three events in the store", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.events) == 3
	})
	time.Sleep(50 * time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	var rvs []uint64
	for _, ev := range s.events {
		rvs = append(rvs, ev.Row.ResourceVersion)
	}
	if diff := cmp.Diff([]uint64{20, 21, 22}, rvs); diff != "" {
		t.Errorf("events stored (-want +got):\n%s", diff)
	}
}

// metricValue reads a gauge or a counter.
func metricValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Gauge != nil {
		return m.GetGauge().GetValue()
	}
	return m.GetCounter().GetValue()
}
