package delay

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// histogramBuckets are the bucket upper bounds, in seconds, of
// krm_stream_delay_seconds.
//
// DELETED delays are negative when the object goes before its grace period
// ends (30 s by default for pods, longer where configured), so the buckets
// reach down to -60 s; anything lower falls into the le="-60" bucket. A
// classic Prometheus histogram accepts negative bounds, but
// histogram_quantile() treats the lowest bucket as a single value, and
// rate() of _sum can go down, so use per-bucket rates rather than _sum for
// DELETED. Object timestamps have 1-second resolution, so a delay below one
// second only says "under a second": the sub-second bounds are few and the
// buckets mostly follow whole seconds.
var histogramBuckets = []float64{-60, -30, -10, -5, -2, -1, -0.5, 0, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 120, 300}

// RecorderOptions configures a Recorder.
type RecorderOptions struct {
	// Window keeps recent samples in memory; nil makes one of
	// DefaultWindowSize.
	Window *Window
	// Registerer gets krm_stream_delay_seconds and
	// krm_stream_delay_unmeasured_total; nil registers nothing.
	Registerer prometheus.Registerer
	// Influx, when set, also gets every sample and unmeasured event. Running
	// its Start is the caller's job.
	Influx *InfluxWriter
	// Now is the clock RecordUnmeasured stamps events with; nil means
	// time.Now.
	Now func() time.Time
}

// Recorder fans delay samples out to a Window, Prometheus and, optionally,
// InfluxDB. Its methods never block, so a watch loop can call them for every
// event, and are safe for concurrent use.
//
// Its Prometheus metrics are krm_stream_delay_seconds{resource,event}, a
// histogram whose buckets run from -60 s (DELETED delays are negative before
// the grace period ends) to 300 s, and
// krm_stream_delay_unmeasured_total{resource,event}. Because DELETED delays
// can be negative, the histogram's _sum can decrease: use its buckets, not
// rate(_sum), for DELETED.
type Recorder struct {
	window     *Window
	influx     *InfluxWriter
	now        func() time.Time
	delay      *prometheus.HistogramVec
	unmeasured *prometheus.CounterVec
}

// NewRecorder returns a Recorder; it fails when its metrics cannot be
// registered.
func NewRecorder(opts RecorderOptions) (*Recorder, error) {
	r := &Recorder{
		window: opts.Window,
		influx: opts.Influx,
		now:    opts.Now,
		delay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "krm_stream_delay_seconds",
			Help:    "Stream delay of fresh watch events: receive time minus creationTimestamp (ADDED) or deletionTimestamp (DELETED, negative before the grace period ends). " + ResolutionNote + ".",
			Buckets: histogramBuckets,
		}, []string{"resource", "event"}),
		unmeasured: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "krm_stream_delay_unmeasured_total",
			Help: "Fresh ADDED or DELETED watch events whose object lacked the timestamp the delay is measured against.",
		}, []string{"resource", "event"}),
	}
	if r.window == nil {
		r.window = NewWindow(DefaultWindowSize)
	}
	if r.now == nil {
		r.now = time.Now
	}
	var err error
	if r.delay, err = register(opts.Registerer, r.delay); err != nil {
		return nil, err
	}
	if r.unmeasured, err = register(opts.Registerer, r.unmeasured); err != nil {
		return nil, err
	}
	return r, nil
}

// Window is the in-memory window the recorder fills.
func (r *Recorder) Window() *Window { return r.window }

// Record records the sample of a fresh event.
func (r *Recorder) Record(s Sample) {
	r.window.Record(s)
	r.delay.WithLabelValues(s.Resource, s.Event).Observe(s.Delay.Seconds())
	if r.influx != nil {
		r.influx.Record(s)
	}
}

// RecordUnmeasured counts a fresh event whose object lacked the timestamp
// (Measure returned ok == false for an event type that Measures).
func (r *Recorder) RecordUnmeasured(cluster, resource, event string) {
	at := r.now()
	r.window.RecordUnmeasured(resource, event, at)
	r.unmeasured.WithLabelValues(resource, event).Inc()
	if r.influx != nil {
		r.influx.RecordUnmeasured(cluster, resource, event, at)
	}
}

// register registers c with reg, or returns the collector already
// registered under the same name, so that several recorders and writers (in
// tests, or after a restart) can share one registry. A nil reg registers
// nothing.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("registering delay metrics: %w", err)
}
