package delay

import (
	"cmp"
	"context"
	"math"
	"slices"
	"sync"
	"time"
)

// DefaultWindowSize is how many samples a Window keeps per resource and
// event when no size is given.
const DefaultWindowSize = 4096

// Stats summarises the delays of one resource and event type over a range.
// Delays are only as precise as Resolution (object timestamps have 1-second
// resolution).
//
// Quantiles are nearest-rank: Pq is the ceil(q·Count)-th smallest delay, a
// delay that was actually observed. This is what Flux's quantile() computes
// with method "exact_selector", which InfluxReader uses, so the window and
// InfluxDB agree on the same samples.
type Stats struct {
	Resource string
	Event    string
	// Count is the number of samples in range; Unmeasured the number of
	// events in range whose object lacked the timestamp.
	Count      int64
	Unmeasured int64
	Min        time.Duration
	P50        time.Duration
	P90        time.Duration
	P99        time.Duration
	Max        time.Duration
	Mean       time.Duration
	// Truncated says the window no longer holds every sample in range (it
	// keeps only the newest ones), so the figures cover less than asked.
	// InfluxReader never sets it.
	Truncated bool
}

// Point is one bucket of a delay time series, for charts. Delays are only as
// precise as Resolution.
type Point struct {
	// At is the start of the bucket: a multiple of the step since the Unix
	// epoch, or the start of the range for the first bucket.
	At    time.Time
	Count int
	P50   time.Duration // nearest-rank, like Stats
	P90   time.Duration
	P99   time.Duration
	Max   time.Duration
}

// Totals counts what a Window has recorded since it was created, including
// samples it no longer holds.
type Totals struct {
	Resource   string
	Event      string
	Count      int64
	Unmeasured int64
}

// Window keeps the most recent delay samples in memory, per resource and
// event type: a ring of the last size samples, a ring of the times of the
// last size unmeasured events, and counters since the window was created.
// Memory is bounded by about 32 bytes × size per resource and event type,
// whatever the event rate. Recording is O(1) and, once a ring is full, does
// not allocate.
//
// A Window is the store of one cluster: it ignores Sample.Cluster. It is safe
// for concurrent use.
type Window struct {
	size int

	mu     sync.RWMutex
	series map[seriesKey]*series
}

type seriesKey struct{ resource, event string }

type series struct {
	samples         ring
	unmeasured      ring // delay unused
	count           int64
	unmeasuredCount int64
}

type entry struct{ at, delay int64 } // UnixNano, nanoseconds

// ring keeps the last size entries in insertion order (not time order).
type ring struct {
	buf  []entry
	next int // the slot to overwrite next, once buf is full
	// evicted is the newest time of an overwritten entry, so Stats can tell
	// whether a range lost entries.
	evicted int64
}

func (r *ring) add(e entry, size int) {
	if len(r.buf) < size {
		if len(r.buf) == cap(r.buf) {
			// Grow by doubling, but never past size, so a full ring holds
			// exactly size entries.
			grown := make([]entry, len(r.buf), min(max(2*cap(r.buf), 16), size))
			copy(grown, r.buf)
			r.buf = grown
		}
		r.buf = append(r.buf, e)
		return
	}
	if old := r.buf[r.next].at; old > r.evicted {
		r.evicted = old
	}
	r.buf[r.next] = e
	r.next++
	if r.next == size {
		r.next = 0
	}
}

// NewWindow returns a Window that keeps size samples per resource and event
// type; size <= 0 means DefaultWindowSize.
func NewWindow(size int) *Window {
	if size <= 0 {
		size = DefaultWindowSize
	}
	return &Window{size: size, series: make(map[seriesKey]*series)}
}

// Size is how many samples the window keeps per resource and event type.
func (w *Window) Size() int { return w.size }

func (w *Window) seriesFor(resource, event string) *series {
	k := seriesKey{resource, event}
	s := w.series[k]
	if s == nil {
		s = &series{samples: ring{evicted: math.MinInt64}, unmeasured: ring{evicted: math.MinInt64}}
		w.series[k] = s
	}
	return s
}

// Record adds a sample. The caller has checked that its event was fresh.
func (w *Window) Record(s Sample) {
	e := entry{at: s.At.UnixNano(), delay: int64(s.Delay)}
	w.mu.Lock()
	sr := w.seriesFor(s.Resource, s.Event)
	sr.samples.add(e, w.size)
	sr.count++
	w.mu.Unlock()
}

// RecordUnmeasured counts a fresh event received at at whose object lacked
// the timestamp its delay is measured against.
func (w *Window) RecordUnmeasured(resource, event string, at time.Time) {
	e := entry{at: at.UnixNano()}
	w.mu.Lock()
	sr := w.seriesFor(resource, event)
	sr.unmeasured.add(e, w.size)
	sr.unmeasuredCount++
	w.mu.Unlock()
}

// Totals returns the counts since the window was created, per resource and
// event type, filtered like Stats.
func (w *Window) Totals(resource, event string) []Totals {
	out := []Totals{}
	w.mu.RLock()
	for k, s := range w.series {
		if matches(k, resource, event) {
			out = append(out, Totals{Resource: k.resource, Event: k.event, Count: s.count, Unmeasured: s.unmeasuredCount})
		}
	}
	w.mu.RUnlock()
	slices.SortFunc(out, func(a, b Totals) int {
		return cmp.Or(cmp.Compare(a.Resource, b.Resource), cmp.Compare(a.Event, b.Event))
	})
	return out
}

// Stats summarises the samples received at or after since, per resource and
// event type, sorted by resource then event. An empty resource or event
// matches all. Resources and events with nothing in range are left out.
func (w *Window) Stats(since time.Time, resource, event string) []Stats {
	from := rangeStart(since).UnixNano()
	type group struct {
		stats  Stats
		delays []int64
	}
	var groups []group
	w.mu.RLock()
	for k, s := range w.series {
		if !matches(k, resource, event) {
			continue
		}
		g := group{stats: Stats{Resource: k.resource, Event: k.event}}
		for _, e := range s.samples.buf {
			if e.at >= from {
				g.delays = append(g.delays, e.delay)
			}
		}
		for _, e := range s.unmeasured.buf {
			if e.at >= from {
				g.stats.Unmeasured++
			}
		}
		g.stats.Truncated = s.samples.evicted >= from || s.unmeasured.evicted >= from
		if len(g.delays) > 0 || g.stats.Unmeasured > 0 {
			groups = append(groups, g)
		}
	}
	w.mu.RUnlock()

	out := make([]Stats, 0, len(groups))
	for _, g := range groups {
		st := g.stats
		if len(g.delays) > 0 {
			slices.Sort(g.delays)
			st.Count = int64(len(g.delays))
			st.Min = time.Duration(g.delays[0])
			st.Max = time.Duration(g.delays[len(g.delays)-1])
			st.P50 = time.Duration(nearestRank(g.delays, 0.5))
			st.P90 = time.Duration(nearestRank(g.delays, 0.9))
			st.P99 = time.Duration(nearestRank(g.delays, 0.99))
			st.Mean = mean(g.delays)
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b Stats) int {
		return cmp.Or(cmp.Compare(a.Resource, b.Resource), cmp.Compare(a.Event, b.Event))
	})
	return out
}

// Series returns the samples received at or after since that match resource
// and event (empty matches all), merged into one series of buckets step
// long, aligned to multiples of step since the Unix epoch as Flux's window()
// does. Buckets without samples are left out. A step <= 0 gives one bucket
// for the whole range.
func (w *Window) Series(since time.Time, step time.Duration, resource, event string) []Point {
	start := rangeStart(since)
	from := start.UnixNano()
	var es []entry
	w.mu.RLock()
	for k, s := range w.series {
		if !matches(k, resource, event) {
			continue
		}
		for _, e := range s.samples.buf {
			if e.at >= from {
				es = append(es, e)
			}
		}
	}
	w.mu.RUnlock()

	// Replace each time by its bucket's start, then sort by bucket and
	// delay so each bucket is a sorted run.
	for i := range es {
		es[i].at = bucketStart(es[i].at, int64(step), from)
	}
	slices.SortFunc(es, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.delay, b.delay))
	})
	out := []Point{}
	delays := make([]int64, 0, len(es))
	for i := 0; i < len(es); {
		j := i
		delays = delays[:0]
		for ; j < len(es) && es[j].at == es[i].at; j++ {
			delays = append(delays, es[j].delay)
		}
		out = append(out, Point{
			At:    time.Unix(0, es[i].at).UTC(),
			Count: len(delays),
			P50:   time.Duration(nearestRank(delays, 0.5)),
			P90:   time.Duration(nearestRank(delays, 0.9)),
			P99:   time.Duration(nearestRank(delays, 0.99)),
			Max:   time.Duration(delays[len(delays)-1]),
		})
		i = j
	}
	return out
}

// WindowReader gives a Window the context-taking, error-returning methods
// of InfluxReader, so that a server can read delay statistics from either.
type WindowReader struct {
	Window *Window
}

// Stats is Window.Stats; it never fails.
func (r WindowReader) Stats(_ context.Context, since time.Time, resource, event string) ([]Stats, error) {
	return r.Window.Stats(since, resource, event), nil
}

// Series is Window.Series; it never fails.
func (r WindowReader) Series(_ context.Context, since time.Time, step time.Duration, resource, event string) ([]Point, error) {
	return r.Window.Series(since, step, resource, event), nil
}

func matches(k seriesKey, resource, event string) bool {
	return (resource == "" || k.resource == resource) && (event == "" || k.event == event)
}

// rangeStart clamps since to the Unix epoch: the zero time means "from the
// beginning", and InfluxDB ranges cannot start earlier.
func rangeStart(since time.Time) time.Time {
	if epoch := time.Unix(0, 0); since.Before(epoch) {
		return epoch.UTC()
	}
	return since.UTC()
}

// bucketStart returns the start of the step-long bucket holding at, never
// earlier than from. step <= 0 puts everything in one bucket starting at
// from.
func bucketStart(at, step, from int64) int64 {
	if step <= 0 {
		return from
	}
	b := at - at%step
	if at%step < 0 {
		b -= step
	}
	return max(b, from)
}

// nearestRank returns the ceil(q·n)-th smallest of the sorted delays, the
// same index Flux's quantile(method: "exact_selector") picks.
func nearestRank(sorted []int64, q float64) int64 {
	i := int(math.Ceil(q * float64(len(sorted))))
	if i > 0 {
		i--
	}
	return sorted[i]
}

func mean(delays []int64) time.Duration {
	// float64 cannot overflow where a sum of int64 nanoseconds could.
	var sum float64
	for _, d := range delays {
		sum += float64(d)
	}
	return time.Duration(math.Round(sum / float64(len(delays))))
}
