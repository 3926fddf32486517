// Package persist is krm-agent's store: the Writer writes each resource's
// frames after every LIST and its watch events through a bounded queue,
// watches the store's health and writes everything again when it comes
// back; the Reader loads them back, at a warm restart and, on a replica that
// does not lead, as the leader writes them.
package persist

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/krm-project/krm/pkg/agent/aggregate"
	"github.com/krm-project/krm/pkg/agent/source"
	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/store"
)

// EventLog is what the agent needs from a store that also keeps the watch
// events between two verified frames (store.Redis), so a restarted agent
// can replay them on top of the last aggregated frame.
type EventLog interface {
	AppendEvents(ctx context.Context, events []store.Event) (skipped int, err error)
	Events(ctx context.Context, cluster, resource string, after uint64, limit int64) ([]store.Event, error)
	TrimEvents(ctx context.Context, cluster, resource string, through uint64) error
}

// streamResetter is what the agent needs to recover a stream whose IDs
// (resourceVersions) are ahead of its cluster's, after an etcd restore
// (store.Redis; see EventsTop for why IDs are resourceVersions).
type streamResetter interface {
	EventsTop(ctx context.Context, cluster, resource string) (rv uint64, id string, err error)
	ResetEvents(ctx context.Context, cluster, resource, id string) (bool, error)
}

// storeChecker is what the agent needs to watch a store that can fail
// (store.Redis): whether it answers, and whether it still holds a frame the
// agent wrote (a Redis that restarted empty answers, but lost them).
type storeChecker interface {
	Ping(ctx context.Context) error
	HasFrame(ctx context.Context, cluster, resource string, source store.Source) (bool, error)
}

const (
	// eventQueueSize bounds the events waiting for the store; the watch
	// never waits for the store, and an event that finds the queue full is
	// dropped and counted. The next frame write covers it.
	eventQueueSize = 16384
	// eventBatch is how many queued events one round trip carries.
	eventBatch = 512
	// storeTimeout bounds one store call; frameWriteTimeout one frame write.
	storeTimeout      = 5 * time.Second
	frameWriteTimeout = 30 * time.Second
	// storeCheckInterval is how often a healthy store is checked: the
	// longest a Redis that lost its data goes unnoticed.
	storeCheckInterval = 2 * time.Second
	// replayPage is how many stored events a warm restart reads at a time.
	replayPage = 1000
)

// Reasons an event is not written to the store, as metric labels.
const (
	dropQueueFull   = "queue-full"
	dropUnhealthy   = "store-unhealthy"
	dropWriteFailed = "write-failed"
	dropOutOfOrder  = "out-of-order"
)

// Writer persists what the agent holds: each resource's verified and
// aggregated frames after every LIST, together (Redis keeps the aggregated
// one as a delta on the verified one, each object once), and, when the store keeps events, each
// watch event through a bounded queue drained by one goroutine. It never
// serves reads. When the store fails it says so (status, /readyz, the
// krm_store_healthy metric), keeps trying with backoff and, once the store
// answers again, writes every resource's frames again.
type Writer struct {
	store   store.Store
	events  EventLog     // nil: the store keeps no events
	checker storeChecker // nil: the store cannot fail (memory)
	resets  streamResetter
	kind    string
	cluster string
	log     *slog.Logger
	metrics *Metrics
	queue   chan store.Event
	// ClusterUID is what every frame written records (store.Header);
	// cluster is the cluster part of the store's keys.
	ClusterUID string
	// accepting is false while the store is down: events are dropped at
	// once instead of queueing for a write that will fail.
	accepting atomic.Bool
	// leading is false while another replica leads (leader election): a
	// follower never writes, or it could put back frames older than the
	// leader's.
	leading atomic.Bool
	// wake tells the health loop a write failed.
	wake chan struct{}
	// CheckEvery is storeCheckInterval; tests shorten it.
	CheckEvery time.Duration

	mu      sync.Mutex
	healthy bool
	message string
	// frames is the per-resource write state, by runner; resources the
	// same resources in the order added.
	frames    map[Resource]*frameState
	resources []Resource
}

// Resource is one resource whose frames and events the writer persists.
type Resource interface {
	ResourceName() string
	Aggregator() *aggregate.Aggregator
}

// CountUnreadable counts a stored frame of resource discarded because it
// does not read back, by reason (corrupt, version, foreign).
func (w *Writer) CountUnreadable(resource, reason string) {
	w.metrics.unreadable.WithLabelValues(resource, reason).Inc()
}

// frameState serialises one resource's frame writes, so an older snapshot
// never overwrites a newer one, and remembers whether one was written.
type frameState struct {
	mu      sync.Mutex
	written bool
	// queuedRV is the newest event queued; listedRV the resourceVersion of
	// the newest LIST written. Neither can exceed the cluster's current
	// resourceVersion, which is how a stream ahead of it is told.
	queuedRV, listedRV atomic.Uint64
}

func NewWriter(s store.Store, kind, cluster string, log *slog.Logger, m *Metrics) *Writer {
	w := &Writer{
		store: s, kind: kind, cluster: cluster, log: log, metrics: m,
		queue:      make(chan store.Event, eventQueueSize),
		wake:       make(chan struct{}, 1),
		healthy:    true,
		frames:     map[Resource]*frameState{},
		CheckEvery: storeCheckInterval,
	}
	w.events, _ = s.(EventLog)
	w.checker, _ = s.(storeChecker)
	w.resets, _ = s.(streamResetter)
	w.accepting.Store(true)
	w.leading.Store(true)
	m.healthy.Set(1)
	return w
}

// follow stops writes until lead: another replica leads.
func (w *Writer) Follow() { w.leading.Store(false) }

// lead lets writes go on: this replica leads.
func (w *Writer) Lead() { w.leading.Store(true) }

// add registers a runner; Complete calls it before anything starts.
func (w *Writer) Add(r Resource) {
	w.frames[r] = &frameState{}
	w.resources = append(w.resources, r)
}

// Start drains the event queue and watches the store's health until ctx is
// done.
func (w *Writer) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	if w.events != nil {
		wg.Go(func() { w.drain(ctx) })
	}
	if w.checker != nil {
		wg.Go(func() { w.watchHealth(ctx) })
	}
	wg.Wait()
	return nil
}

// status is the store's health for the API.
func (w *Writer) Status() api.StoreStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return api.StoreStatus{Kind: w.kind, Healthy: w.healthy, Message: w.message}
}

func (w *Writer) Healthy() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.healthy
}

// fail marks the store unhealthy after err and wakes the health loop.
func (w *Writer) Fail(err error) {
	w.accepting.Store(false)
	w.mu.Lock()
	was := w.healthy
	w.healthy, w.message = false, err.Error()
	w.mu.Unlock()
	w.metrics.healthy.Set(0)
	if was {
		w.log.Error("store failed; serving from memory, and writing the frames again once it answers", "store", w.kind, "err", err)
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Writer) recovered() {
	w.mu.Lock()
	was := w.healthy
	w.healthy, w.message = true, ""
	w.mu.Unlock()
	w.metrics.healthy.Set(1)
	if !was {
		w.log.Info("store answers again; frames written again", "store", w.kind)
	}
}

// writeFrames writes r's verified and aggregated frames, then trims the
// events the verified frame covers. While the store is down it does nothing:
// the health loop writes every frame once it is back.
func (w *Writer) WriteFrames(ctx context.Context, r Resource) {
	if !w.leading.Load() || (w.checker != nil && !w.Healthy()) {
		return
	}
	if err := w.write(ctx, r); err != nil {
		if ctx.Err() == nil {
			w.Fail(err)
		}
		return
	}
	if w.checker == nil {
		w.recovered()
	}
}

func (w *Writer) write(ctx context.Context, r Resource) error {
	st := w.frames[r]
	st.mu.Lock()
	defer st.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, frameWriteTimeout)
	defer cancel()
	verified, aggregated := r.Aggregator().Frames()
	// The frames are the aggregator's; their rows are shared and
	// immutable, their headers copied to record the cluster's UID.
	verified = &store.Frame{Header: verified.Header, Rows: verified.Rows}
	aggregated = &store.Frame{Header: aggregated.Header, Rows: aggregated.Rows}
	verified.Header.ClusterUID = w.ClusterUID
	aggregated.Header.ClusterUID = w.ClusterUID
	err := w.store.PutFrames(ctx, verified, aggregated)
	w.metrics.frameWrites.WithLabelValues(r.ResourceName(), source.Result(err)).Inc()
	if err != nil {
		return fmt.Errorf("writing the %s frames: %w", r.ResourceName(), err)
	}
	st.written = true
	if prev := st.listedRV.Swap(verified.Header.ResourceVersion); verified.Header.ResourceVersion < prev {
		// A LIST older than the last one: the cluster's resourceVersions
		// went back (an etcd restore). Events newer than this LIST are
		// new, not replays of ones queued before the restore.
		st.queuedRV.Store(verified.Header.ResourceVersion)
		w.log.Warn("the cluster's resourceVersion went back (etcd restored?); queueing its events again from this LIST's",
			"store", w.kind, "resource", r.ResourceName(), "resourceVersion", verified.Header.ResourceVersion, "previousList", prev)
	}
	if w.events != nil {
		if err := w.events.TrimEvents(ctx, w.cluster, r.ResourceName(), verified.Header.ResourceVersion); err != nil {
			return err
		}
	}
	// The frames just written carry a new generation, so followers reload
	// them and read a reset stream from their resourceVersion.
	_, err = w.resetFutureEvents(ctx, r)
	return err
}

// resetFutureEvents drops r's event stream when it holds an ID newer than
// anything r's cluster can have produced: newer than the last LIST written
// and than every event queued. A stream whose IDs are resourceVersions
// refuses every older event, so after an etcd restore (resourceVersions
// going back) it would refuse them all, forever. Before r's first LIST of
// this run nothing tells the cluster's resourceVersion, and nothing is
// decided. The top is read before the queued resourceVersion: an event
// appended in between was queued first.
func (w *Writer) resetFutureEvents(ctx context.Context, r Resource) (bool, error) {
	st := w.frames[r]
	if w.resets == nil || st.listedRV.Load() == 0 {
		return false, nil
	}
	top, id, err := w.resets.EventsTop(ctx, w.cluster, r.ResourceName())
	if err != nil {
		return false, err
	}
	known := max(st.listedRV.Load(), st.queuedRV.Load())
	if top <= known {
		return false, nil
	}
	reset, err := w.resets.ResetEvents(ctx, w.cluster, r.ResourceName(), id)
	if err != nil || !reset {
		return false, err
	}
	w.metrics.streamResets.WithLabelValues(r.ResourceName()).Inc()
	w.log.Warn("dropped the event stream: it holds resourceVersions newer than the cluster's (etcd restored, or the cluster rebuilt?), so it refused every new event; new events are appended again",
		"store", w.kind, "resource", r.ResourceName(), "streamResourceVersion", top, "clusterResourceVersion", known)
	return true, nil
}

// event queues a watch event for the store without ever blocking the
// watch. Streamer goroutine of r only.
func (w *Writer) Event(r Resource, typ string, row *store.Row) {
	if w.events == nil {
		return
	}
	st := w.frames[r]
	if row.ResourceVersion <= st.queuedRV.Load() {
		return // a resumed watch replaying what was queued already
	}
	st.queuedRV.Store(row.ResourceVersion)
	if !w.accepting.Load() {
		w.metrics.eventsDropped.WithLabelValues(r.ResourceName(), dropUnhealthy).Inc()
		return
	}
	select {
	case w.queue <- store.Event{Cluster: w.cluster, Resource: r.ResourceName(), Type: typ, Row: row}:
	default:
		w.metrics.eventsDropped.WithLabelValues(r.ResourceName(), dropQueueFull).Inc()
	}
}

// drain writes queued events in batches until ctx is done.
func (w *Writer) drain(ctx context.Context) {
	batch := make([]store.Event, 0, eventBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-w.queue:
			batch = append(batch[:0], ev)
		}
	more:
		for len(batch) < eventBatch {
			select {
			case ev := <-w.queue:
				batch = append(batch, ev)
			default:
				break more
			}
		}
		w.appendBatch(ctx, batch)
		clear(batch)
	}
}

func (w *Writer) appendBatch(ctx context.Context, batch []store.Event) {
	if !w.accepting.Load() {
		for _, ev := range batch {
			w.metrics.eventsDropped.WithLabelValues(ev.Resource, dropUnhealthy).Inc()
		}
		return
	}
	actx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	skipped, err := w.events.AppendEvents(actx, batch)
	if err != nil {
		if ctx.Err() != nil {
			return // shutting down
		}
		for _, ev := range batch {
			w.metrics.eventsDropped.WithLabelValues(ev.Resource, dropWriteFailed).Inc()
		}
		w.Fail(fmt.Errorf("writing events: %w", err))
		return
	}
	// Out-of-order events are rare (a watch started behind the stream);
	// they are not worth a label each.
	if skipped > 0 {
		w.metrics.eventsDropped.WithLabelValues(batch[0].Resource, dropOutOfOrder).Add(float64(skipped))
		w.recoverStreams(ctx, batch)
	}
	w.metrics.eventsWritten.Add(float64(len(batch) - skipped))
}

// recoverStreams resets the streams of batch's resources that are ahead of
// their cluster (see resetFutureEvents) and writes those resources' frames
// again: they hold the events the stream refused, and their new generation
// tells followers to reload.
func (w *Writer) recoverStreams(ctx context.Context, batch []store.Event) {
	if w.resets == nil || !w.leading.Load() {
		return
	}
	seen := map[string]bool{}
	for _, ev := range batch {
		if seen[ev.Resource] {
			continue
		}
		seen[ev.Resource] = true
		for r := range w.frames {
			if r.ResourceName() != ev.Resource {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, storeTimeout)
			reset, err := w.resetFutureEvents(rctx, r)
			cancel()
			if err == nil && reset {
				err = w.write(ctx, r)
			}
			if err != nil && ctx.Err() == nil {
				w.Fail(err)
				return
			}
		}
	}
}

// watchHealth checks a healthy store every storeCheckInterval, and a failed
// one with backoff until it answers; then it writes every frame again.
func (w *Writer) watchHealth(ctx context.Context) {
	backoff := source.NewBackoff(source.WatchRetryMin, source.RetryMax)
	retry := backoff.Next()
	for {
		wait := w.CheckEvery
		if !w.Healthy() {
			wait = retry
		}
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
			continue // recompute the wait: the store just failed
		case <-time.After(wait):
		}
		if w.Healthy() {
			w.check(ctx)
			continue
		}
		if err := w.recover(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			w.mu.Lock()
			w.message = err.Error()
			w.mu.Unlock()
			retry = backoff.Next()
			w.log.Debug("store still failing", "store", w.kind, "err", err, "retryIn", retry)
			continue
		}
		backoff.Reset()
		retry = backoff.Next()
		w.recovered()
	}
}

// check pings a healthy store and makes sure it still holds the frames
// written to it: a Redis restarted without persistence answers, empty.
func (w *Writer) check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := w.checker.Ping(cctx); err != nil {
		if ctx.Err() == nil {
			w.Fail(fmt.Errorf("pinging the store: %w", err))
		}
		return
	}
	for r, st := range w.frames {
		st.mu.Lock()
		written := st.written
		st.mu.Unlock()
		if !written {
			continue
		}
		ok, err := w.checker.HasFrame(cctx, w.cluster, r.ResourceName(), store.Verified)
		if err != nil {
			if ctx.Err() == nil {
				w.Fail(err)
			}
			return
		}
		if !ok && w.leading.Load() {
			w.log.Warn("the store lost a frame (restarted or flushed?); writing it again", "store", w.kind, "resource", r.ResourceName())
			if err := w.write(ctx, r); err != nil {
				w.Fail(err)
				return
			}
		}
	}
}

// recover pings the store and, once it answers, writes every resource's
// frames again. Events are accepted again first: one queued between the
// frames' snapshot and the store turning healthy would otherwise be lost.
func (w *Writer) recover(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, storeTimeout)
	err := w.checker.Ping(pctx)
	cancel()
	if err != nil {
		return fmt.Errorf("pinging the store: %w", err)
	}
	w.accepting.Store(true)
	for r := range w.frames {
		if !r.Aggregator().Ready() || !w.leading.Load() {
			continue
		}
		if err := w.write(ctx, r); err != nil {
			w.accepting.Store(false)
			return err
		}
	}
	return nil
}

// Metrics are the store's Prometheus series.
type Metrics struct {
	healthy       prometheus.Gauge
	frameWrites   *prometheus.CounterVec
	eventsWritten prometheus.Counter
	eventsDropped *prometheus.CounterVec
	streamResets  *prometheus.CounterVec
	unreadable    *prometheus.CounterVec
}

func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		healthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "krm_store_healthy", Help: "1 when the store answers and holds the agent's frames, 0 while the agent serves from memory alone (degraded).",
		}),
		frameWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "krm_store_frame_writes_total", Help: "Frames written to the store, by resource and result (ok or error).",
		}, []string{"resource", "result"}),
		eventsWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "krm_store_events_written_total", Help: "Watch events appended to the store's event streams.",
		}),
		eventsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "krm_store_events_dropped_total", Help: "Watch events not appended to the store, by resource and reason (queue-full, store-unhealthy, write-failed, out-of-order); the next frame write covers them.",
		}, []string{"resource", "reason"}),
		streamResets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "krm_store_event_stream_resets_total", Help: "Event streams dropped because they held resourceVersions newer than the cluster's (an etcd restore), by resource.",
		}, []string{"resource"}),
		unreadable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "krm_store_frames_unreadable_total", Help: "Stored frames discarded on a warm start or by a follower because they did not read back, by resource and reason (version: written by another krm version's format; corrupt; foreign: another cluster's). The leader's next LIST rewrites them.",
		}, []string{"resource", "reason"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.healthy, m.frameWrites, m.eventsWritten, m.eventsDropped, m.streamResets, m.unreadable} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
