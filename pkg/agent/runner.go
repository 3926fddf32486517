package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/krm-project/krm/pkg/agent/aggregate"
	"github.com/krm-project/krm/pkg/agent/persist"
	"github.com/krm-project/krm/pkg/agent/source"
	"github.com/krm-project/krm/pkg/api"
	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/delay"
	"github.com/krm-project/krm/pkg/history"
	"github.com/krm-project/krm/pkg/store"
)

const (
	listPageSize = 500
	// listPagesPerTimeout: a verifying LIST as a whole may take this many
	// times its per-request bound (requestTimeout) while its pages keep
	// coming; see verifyOnce.
	listPagesPerTimeout = 10
	// resumedAfterList: a watch opened within this of a LIST replays
	// nothing worth keeping out of the delay figures (freshBoundary).
	resumedAfterList = 2 * time.Second
	// jitterFactor spreads LISTs: each interval is up to 10% longer.
	jitterFactor = 0.1
	// watchStallAfter is how long a watch may deliver nothing, not even a
	// bookmark, before it is taken for stalled and restarted.
	// kube-apiserver sends watches that allow bookmarks one about every
	// minute, so a healthy quiet watch is never silent this long; without
	// the watchdog a stalled one would last until the server's timeout.
	watchStallAfter = DefaultWatchStallTimeout
)

// DefaultWatchStallTimeout is Config.WatchStallTimeout's default.
const DefaultWatchStallTimeout = 150 * time.Second

// errWatchStalled ends a watch that went silent.
var errWatchStalled = errors.New("delivered nothing, not even a bookmark")

// runner runs one resource: a streamer (the watch), a verifier (the periodic
// LIST) and the aggregator they feed. It implements api.Resource.
type runner struct {
	info     api.ResourceInfo
	client   source.ListWatcher
	selector metav1.ListOptions // namespace is in client; label selector here
	interval time.Duration
	agg      *aggregate.Aggregator
	rows     *rowBuilder
	// writer persists frames and events; the store is never read here.
	writer  *persist.Writer
	metrics *metrics
	log     *slog.Logger

	// relist asks the verifier for a LIST now (after 410 Gone); listed
	// tells the streamer one landed.
	relist chan struct{}
	listed chan struct{}

	// delay records the stream delay of fresh ADDED and DELETED events;
	// nil measures nothing.
	delay   *delay.Recorder
	cluster string
	// listedAt is when the last LIST landed (UnixNano), for the streamer
	// to tell a watch started from it from a resumed one.
	listedAt atomic.Int64
	// freshFrom: events at or below it were replayed by a watch resume,
	// not fresh, and are not delay samples. Streamer goroutine only.
	freshFrom uint64
	// stallAfter overrides watchStallAfter (Config.WatchStallTimeout).
	stallAfter time.Duration
	// listTimeout, when set, overrides requestTimeout's bound on each
	// request of a verifying LIST.
	listTimeout time.Duration
	// watchList: the verifier reads the collection as a WatchList
	// (sendInitialEvents) instead of a paginated LIST. Verifier goroutine
	// only: it falls back to LISTs for good when the server has none.
	watchList bool
	// hist keeps every revision seen (nil when --history=0); see
	// recordHistory, baseHistory and repairHistory.
	hist *history.Log
	// histManagers are the managers of the objects the running LIST
	// decoded. Verifier goroutine only.
	histManagers map[string][]krmv1alpha1.ManagerEntry
}

var _ api.Resource = (*runner)(nil)

// Start runs the verifier and the streamer until ctx is done. The first LIST
// lands before the watch starts, so the watch begins at its resourceVersion.
func (r *runner) Start(ctx context.Context) error {
	// A first LIST that keeps failing (RBAC, a removed API) is retried with
	// backoff up to source.RetryMax, not every second forever; the
	// resource answers 503 with the error meanwhile, and the others are
	// served.
	retry := source.NewBackoff(source.ListRetryMin, source.RetryMax)
	for {
		err := r.verifyOnce(ctx)
		if err == nil {
			break
		}
		d := retry.Next()
		r.log.Error("first LIST failed; retrying", "resource", r.info.Name, "err", err, "retryIn", d)
		if !source.Wait(ctx, d) {
			return nil
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.stream(ctx)
	}()
	r.verifyLoop(ctx)
	<-done
	return nil
}

func (r *runner) jittered(d time.Duration) time.Duration {
	return d + time.Duration(rand.Float64()*jitterFactor*float64(d))
}

// verifyLoop LISTs every interval (jittered) and whenever the streamer asks.
func (r *runner) verifyLoop(ctx context.Context) {
	timer := time.NewTimer(r.jittered(r.interval))
	defer timer.Stop()
	retry := source.NewBackoff(source.ListRetryMin, source.RetryMax)
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-r.relist:
		}
		next := r.interval
		if err := r.verifyOnce(ctx); err != nil && ctx.Err() == nil {
			// A failed LIST is retried soon, not an interval later: after a
			// 410 the watch waits for it, and the views are frozen meanwhile.
			next = min(retry.Next(), r.interval)
			r.log.Error("LIST failed; retrying", "resource", r.info.Name, "err", err, "retryIn", next)
		} else {
			retry.Reset()
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(r.jittered(next))
	}
}

// requestTimeout bounds each request of a verifying LIST: one page, or the
// wait for the WatchList's next object. It is the interval, at least 30 s,
// unless the runner's listTimeout says otherwise (tests).
func (r *runner) requestTimeout() time.Duration {
	if r.listTimeout > 0 {
		return r.listTimeout
	}
	return max(r.interval, 30*time.Second)
}

// verifyOnce runs one paginated LIST and lands it. Each page must arrive
// within requestTimeout; the whole LIST, which at 100,000 objects on a busy
// kube-apiserver is hundreds of pages and can take longer than an
// interval, within listPagesPerTimeout times that (10 minutes at the
// default interval). A LIST bounded as a whole by one interval never
// landed there: every attempt timed out half-way and the views went
// unverified.
func (r *runner) verifyOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, listPagesPerTimeout*r.requestTimeout())
	defer cancel()
	start := time.Now()
	r.histManagers = nil // a failed LIST's
	rows, rv, err := r.list(ctx)
	r.metrics.lists.WithLabelValues(r.info.Name, result(err)).Inc()
	r.metrics.listSeconds.WithLabelValues(r.info.Name).Observe(time.Since(start).Seconds())
	if err != nil {
		r.agg.SetError(aggregate.FromList, err)
		r.metrics.forgotten.WithLabelValues(r.info.Name).Set(float64(r.agg.ForgottenDeletions()))
		return err
	}
	at := r.agg.Now()
	// The drift the LIST exposes reaches history through driftFound, when
	// it is judged; the first LIST is history's base.
	r.agg.Verify(aggregate.Verification{Rows: rows, RV: rv, At: at, Managers: r.histManagers})
	r.baseHistory(rows, rv, at)
	r.agg.SetError(aggregate.FromList, nil)
	st := r.agg.Status(r.info)
	r.metrics.forgotten.WithLabelValues(r.info.Name).Set(float64(st.ForgottenDeletions))
	r.metrics.objects.WithLabelValues(r.info.Name, string(store.Verified)).Set(float64(st.Objects.Verified))
	r.metrics.objects.WithLabelValues(r.info.Name, string(store.Aggregated)).Set(float64(st.Objects.Aggregated))
	r.persist(ctx)
	if r.agg.NeedsRelist() {
		// Deletions forgotten while LISTs failed may predate this LIST's
		// start: a newer one settles them.
		select {
		case r.relist <- struct{}{}:
		default:
		}
	}
	r.listedAt.Store(time.Now().UnixNano())
	select {
	case r.listed <- struct{}{}:
	default:
	}
	return nil
}

// driftFound counts and logs drift when it is judged (when a LIST lands,
// or later, when the watch has delivered up to the LIST's resourceVersion)
// and records its repairs in history. It runs under the aggregator's lock.
func (r *runner) driftFound(found aggregate.Judged) {
	r.repairHistory(found)
	if found.Unjudged {
		return
	}
	d, listRV := found.Counts, store.FormatResourceVersion(found.ListRV)
	r.metrics.drift.WithLabelValues(r.info.Name, api.MissedAdded).Add(float64(d.MissedAdded))
	r.metrics.drift.WithLabelValues(r.info.Name, api.MissedDeleted).Add(float64(d.MissedDeleted))
	r.metrics.drift.WithLabelValues(r.info.Name, api.MissedModified).Add(float64(d.MissedModified))
	r.log.Warn("a LIST found events the stream missed; the streamed view was repaired", "resource", r.info.Name,
		"resourceVersion", listRV, "missedAdded", d.MissedAdded, "missedDeleted", d.MissedDeleted, "missedModified", d.MissedModified)
}

// list runs one paginated LIST. Each item is read from the response as it
// arrives and compared, by UID and resourceVersion read from its bytes,
// with the row the views hold: an object they hold at that version keeps
// its row and is not decoded at all, so the LIST holds one item and the
// rows, not a decoded page. A row without the cells a Table brings (from
// a frame written before) is rebuilt.
func (r *runner) list(ctx context.Context) ([]*store.Row, uint64, error) {
	opts := r.selector
	opts.Limit = listPageSize
	var rows []*store.Row
	each := func(it source.Item) error {
		uid, rv, err := source.RawMeta(it.Object)
		if err != nil {
			return fmt.Errorf("an item of the LIST of %s: %w", r.info.Name, err)
		}
		if row := r.agg.RowAt(uid, rv); row != nil && (it.Cells == nil || row.Cells != nil) {
			rows = append(rows, row)
			return nil
		}
		obj, err := source.DecodeObject(it.Object)
		if err != nil {
			return fmt.Errorf("an item of the LIST of %s: %w", r.info.Name, err)
		}
		// A JSON LIST's items leave kind and apiVersion to the list, as
		// the dynamic client's UnstructuredList fills them in.
		if obj.GetKind() == "" {
			obj.SetKind(r.info.Kind)
		}
		if obj.GetAPIVersion() == "" {
			obj.SetAPIVersion(r.info.APIVersion())
		}
		row, err := r.rows.build(obj, it.Cells, store.Verified)
		if err != nil {
			return err
		}
		r.listedManagers(obj, row)
		rows = append(rows, row)
		return nil
	}
	if r.watchList {
		rvs, err := r.watchListed(ctx, each)
		if errors.Is(err, source.ErrNoWatchList) {
			r.log.Warn("verifying with paginated LISTs instead of WatchList", "resource", r.info.Name, "err", err)
			r.watchList = false
			clear(rows)
			rows = rows[:0]
		} else {
			if err != nil {
				return nil, 0, fmt.Errorf("listing %s (WatchList): %w", r.info.Name, err)
			}
			rv, err := store.ParseResourceVersion(rvs)
			if err != nil {
				return nil, 0, fmt.Errorf("listing %s (WatchList): %w", r.info.Name, err)
			}
			return rows, rv, nil
		}
	}
	for {
		meta, err := r.listPage(ctx, opts, each)
		if apierrors.IsResourceExpired(err) && opts.Continue != "" {
			// The continue token outlived the compaction window: start over
			// at a fresh resourceVersion.
			clear(rows)
			opts.Continue, rows = "", rows[:0]
			continue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("listing %s: %w", r.info.Name, err)
		}
		if meta.Continue == "" {
			rv, err := store.ParseResourceVersion(meta.ResourceVersion)
			if err != nil {
				return nil, 0, fmt.Errorf("listing %s: %w", r.info.Name, err)
			}
			return rows, rv, nil
		}
		opts.Continue = meta.Continue
	}
}

// watchListed reads a WatchList, which sends every object on one stream:
// it is cut when no object arrives for requestTimeout.
func (r *runner) watchListed(ctx context.Context, each func(source.Item) error) (string, error) {
	d := r.requestTimeout()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	silent := time.AfterFunc(d, func() {
		cancel(fmt.Errorf("%w: no object of the WatchList for %s", context.DeadlineExceeded, d))
	})
	defer silent.Stop()
	rv, err := r.client.WatchList(ctx, r.selector, func(it source.Item) error {
		silent.Reset(d)
		return each(it)
	})
	if err != nil && ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	return rv, err
}

// listPage reads one page of a verifying LIST within requestTimeout.
func (r *runner) listPage(ctx context.Context, opts metav1.ListOptions, each func(source.Item) error) (metav1.ListMeta, error) {
	ctx, cancel := context.WithTimeout(ctx, r.requestTimeout())
	defer cancel()
	return r.client.ListPage(ctx, opts, each)
}

// stream keeps one watch open, resuming from the last resourceVersion it
// delivered. On 410 Gone it asks for a LIST and resumes from that.
func (r *runner) stream(ctx context.Context) {
	backoff := source.NewBackoff(source.WatchRetryMin, source.RetryMax)
	for ctx.Err() == nil {
		err := r.watchOnce(ctx)
		r.agg.SetConnected(false)
		if ctx.Err() != nil {
			return
		}
		reason := "closed"
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			reason = "gone"
			r.log.Info("watch expired (410 Gone); relisting", "resource", r.info.Name)
			// A LIST that landed before this one was asked for does not
			// help: wait for a fresh one.
			select {
			case <-r.listed:
			default:
			}
			select {
			case r.relist <- struct{}{}:
			default:
			}
			select {
			case <-r.listed:
			case <-ctx.Done():
				return
			}
			backoff.Reset()
		} else if err != nil {
			reason = "error"
			if errors.Is(err, errWatchStalled) {
				reason = "stalled"
			}
			r.agg.SetError(aggregate.FromStream, err)
			d := backoff.Next()
			r.log.Warn("watch failed; resuming", "resource", r.info.Name, "err", err, "backoff", d)
			if !source.Wait(ctx, d) {
				return
			}
		} else {
			backoff.Reset()
		}
		r.metrics.watchRestarts.WithLabelValues(r.info.Name, reason).Inc()
	}
}

// watchOnce runs one watch until it ends. A nil error means the server ended
// it normally (its timeout), so it is resumed at once.
func (r *runner) watchOnce(ctx context.Context) error {
	opts := r.selector
	from := r.agg.ResumeFrom()
	opts.ResourceVersion = store.FormatResourceVersion(from)
	opts.AllowWatchBookmarks = true
	// The server ends each watch after this; resuming then is cheap and
	// spreads reconnects.
	timeout := int64(r.jittered(5 * time.Minute).Seconds())
	opts.TimeoutSeconds = &timeout
	w, err := r.client.Watch(ctx, opts)
	if err != nil {
		return fmt.Errorf("watching %s: %w", r.info.Name, err)
	}
	defer w.Stop()
	r.agg.WatchFrom(from)
	// Only once the watch is open: its request may have waited (in API
	// Priority and Fairness queues, on a slow network) while changes went
	// on, and the watch replays those too.
	r.freshFrom = r.freshBoundary(ctx, opts.ResourceVersion)
	r.agg.SetConnected(true)
	r.agg.SetError(aggregate.FromStream, nil)
	stallAfter := watchStallAfter
	if r.stallAfter > 0 {
		stallAfter = r.stallAfter
	}
	stall := time.NewTimer(stallAfter)
	defer stall.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-stall.C:
			return fmt.Errorf("the watch of %s %w for %s; restarting it", r.info.Name, errWatchStalled, stallAfter)
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil
			}
			stall.Reset(stallAfter)
			if err := r.handle(ev); err != nil {
				return err
			}
		}
	}
}

// freshBoundary returns the resourceVersion up to which the watch just
// opened from rv replays history. A watch opened right after a LIST replays
// nothing worth excluding; a resumed one replays what happened while it was
// away, and those events' delays would measure the outage, so the boundary
// is the current resourceVersion, from a one-item LIST. Fresh events that
// land between the watch opening and that LIST are left out too: losing a
// few samples is better than recording an outage as delay.
func (r *runner) freshBoundary(ctx context.Context, rv string) uint64 {
	from, _ := store.ParseResourceVersion(rv)
	if r.delay == nil || time.Since(time.Unix(0, r.listedAt.Load())) < resumedAfterList {
		return from
	}
	opts := r.selector
	opts.Limit = 1
	meta, err := r.client.ListPage(ctx, opts, func(source.Item) error { return nil })
	if err != nil {
		r.log.Debug("no current resourceVersion for the delay boundary; counting resumed events as fresh", "resource", r.info.Name, "err", err)
		return from
	}
	cur, err := store.ParseResourceVersion(meta.ResourceVersion)
	if err != nil {
		return from
	}
	return max(from, cur)
}

// measure records the stream delay of a fresh ADDED or DELETED event.
func (r *runner) measure(typ string, obj *unstructured.Unstructured, row *store.Row) {
	if r.delay == nil || !delay.Measures(typ) || row.ResourceVersion <= r.freshFrom {
		return
	}
	d, ok := delay.Measure(typ, obj, row.ObservedAt)
	if !ok {
		r.delay.RecordUnmeasured(r.cluster, r.info.Name, typ)
		return
	}
	r.delay.Record(delay.Sample{
		Cluster: r.cluster, Resource: r.info.Name, Namespace: row.Namespace, Event: typ,
		Delay: d, ResourceVersion: row.ResourceVersion, At: row.ObservedAt,
	})
}

func (r *runner) handle(ev watch.Event) error {
	switch ev.Type {
	case watch.Error:
		return apierrors.FromObject(ev.Object)
	case watch.Bookmark:
		obj, ok := ev.Object.(*unstructured.Unstructured)
		if !ok {
			return nil
		}
		if rv, err := store.ParseResourceVersion(obj.GetResourceVersion()); err == nil {
			r.agg.Progress(rv)
		}
		return nil
	case watch.Added, watch.Modified, watch.Deleted:
		obj, cells, ok := source.EventObject(ev.Object)
		if !ok {
			return fmt.Errorf("watch of %s delivered %T, not an object", r.info.Name, ev.Object)
		}
		row, err := r.rows.build(obj, cells, store.Streamed)
		if err != nil {
			// One bad object must not stop the stream; the next LIST
			// brings it in.
			r.log.Error("dropping event", "resource", r.info.Name, "type", ev.Type, "err", err)
			return nil
		}
		r.metrics.events.WithLabelValues(r.info.Name, string(ev.Type)).Inc()
		r.measure(string(ev.Type), obj, row)
		r.agg.Apply(string(ev.Type), row, aggregate.Received)
		r.recordHistory(string(ev.Type), obj, row)
		r.writer.Event(r, string(ev.Type), row)
	}
	return nil
}

// persist writes the verified and aggregated frames to the store (see
// persist.Writer). A store failure is reported in status; serving goes on from
// memory.
func (r *runner) persist(ctx context.Context) {
	r.writer.WriteFrames(ctx, r)
}

func result(err error) string { return source.Result(err) }

// api.Resource

func (r *runner) Info() api.ResourceInfo { return r.info }

// persist.Resource

func (r *runner) ResourceName() string              { return r.info.Name }
func (r *runner) Aggregator() *aggregate.Aggregator { return r.agg }

func (r *runner) Status() api.ResourceStatus { return r.agg.Status(r.info) }
func (r *runner) Snapshot(view store.Source) *api.Snapshot {
	return r.agg.Snapshot(view)
}
func (r *runner) Subscribe(ctx context.Context, view store.Source, from uint64) (*api.Snapshot, []api.Change, <-chan api.Change, error) {
	return r.agg.Subscribe(ctx, view, from)
}
func (r *runner) Drift() api.DriftReport { return r.agg.Drift() }

// TableColumns are the column definitions of the rows' Cells, from the
// latest Table kube-apiserver sent; nil for a kind the server prints itself.
func (r *runner) TableColumns() []metav1.TableColumnDefinition {
	if t, ok := r.client.(*source.API); ok && t.Tables() {
		return t.Columns()
	}
	return nil
}
