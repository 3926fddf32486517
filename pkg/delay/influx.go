package delay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"
	"github.com/influxdata/influxdb-client-go/v2/api/write"
	"github.com/prometheus/client_golang/prometheus"
)

// InfluxDB measurements. A point of Measurement is one sample: tags
// cluster, resource, namespace (absent for cluster-scoped objects) and
// event; fields delay_seconds (float, with the 1-second resolution of object
// timestamps) and resource_version (integer); timestamp the receive time. A
// point of MeasurementUnmeasured is one unmeasured event: tags cluster,
// resource and event; field count (integer, always 1); timestamp the receive
// time.
const (
	Measurement           = "krm_stream_delay"
	MeasurementUnmeasured = "krm_stream_delay_unmeasured"
)

// Defaults for InfluxConfig fields left zero.
const (
	DefaultBatchSize     = 500
	DefaultFlushInterval = time.Second
	DefaultBufferSize    = 10000
	DefaultInfluxTimeout = 5 * time.Second
)

// InfluxConfig says where delay samples go in InfluxDB and how they are
// batched. It works with InfluxDB 2 and with InfluxDB 1.8 started with
// flux-enabled = true, which serves the /api/v2 write and query endpoints:
// there the bucket is "<database>" or "<database>/<retention policy>"
// (e.g. "krm" or "krm/autogen"), Org is ignored and Token is empty or
// "<user>:<password>".
type InfluxConfig struct {
	URL    string // base URL, e.g. http://influxdb:8086
	Token  string
	Org    string
	Bucket string
	// BatchSize is the most points one write sends.
	BatchSize int
	// FlushInterval is the longest a point waits before being written.
	FlushInterval time.Duration
	// BufferSize is how many points wait for a write before new ones are
	// dropped (and counted).
	BufferSize int
	// Timeout bounds each write and query, and the final flush.
	Timeout time.Duration
	// CreateUser makes the writer create, on an InfluxDB 1.8 without an
	// admin user yet, the Token's user as that admin, and the database,
	// before it writes (setupInflux). Off, it only writes.
	CreateUser bool
}

func (c InfluxConfig) complete() (InfluxConfig, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return c, fmt.Errorf("InfluxDB URL %q: %w", c.URL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, fmt.Errorf("InfluxDB URL %q: want http://host:port or https://host:port", c.URL)
	}
	if c.Bucket == "" {
		return c, errors.New("InfluxDB bucket is empty: for InfluxDB 1.8 it is the database name, e.g. krm")
	}
	if user, password, ok := strings.Cut(c.Token, ":"); c.CreateUser && (!ok || user == "" || password == "") {
		return c, errors.New("creating the InfluxDB user needs the token as user:password (InfluxDB 1.8), from KRM_INFLUX_TOKEN or --influx-token")
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.BufferSize <= 0 {
		c.BufferSize = DefaultBufferSize
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultInfluxTimeout
	}
	return c, nil
}

func (c InfluxConfig) client() influxdb2.Client {
	opts := influxdb2.DefaultOptions().
		SetApplicationName("krm").
		// Each call has a ctx deadline of Timeout; this is a backstop.
		SetHTTPRequestTimeout(uint((2*c.Timeout + time.Second - 1) / time.Second))
	return influxdb2.NewClientWithOptions(c.URL, c.Token, opts)
}

// pointWriter is what InfluxWriter needs of the InfluxDB client.
type pointWriter interface {
	WritePoint(ctx context.Context, points ...*write.Point) error
}

// InfluxWriter writes delay samples to InfluxDB in batches. Record and
// RecordUnmeasured never block: they queue the point in a bounded buffer, and
// when the buffer is full they drop it and count it
// (krm_influx_points_dropped_total{reason="buffer_full"}). Start writes the
// batches with a blocking write, so every failure is seen, logged and counted;
// a batch that fails is dropped, not retried
// (krm_influx_points_dropped_total{reason="write_error"}, or
// reason="unauthorized" when InfluxDB refuses the credentials: no retry
// fixes that, and the error log says which setting to fix).
//
// InfluxDB keeps one point per series and timestamp, so the writer makes
// timestamps unique by moving a point that would collide with the previous
// one at most a millisecond later.
type InfluxWriter struct {
	cfg    InfluxConfig
	log    *slog.Logger
	client influxdb2.Client
	api    pointWriter
	hc     *http.Client // for setupInflux
	queue  chan queued

	written     prometheus.Counter
	writeErrors prometheus.Counter
	dropped     *prometheus.CounterVec

	// Used by Start's goroutine only.
	last     int64 // timestamp of the last point, UnixNano
	failing  int   // consecutive failed writes
	lastWarn time.Time
	// setUp is true once setupInflux succeeded (or was not asked for).
	setUp bool
}

type queued struct {
	s          Sample
	unmeasured bool
}

// Reasons of krm_influx_points_dropped_total.
const (
	dropBufferFull   = "buffer_full"
	dropWriteError   = "write_error"
	dropUnauthorized = "unauthorized"
)

// ErrUnauthorized is wrapped by a write or query error when InfluxDB
// refused the credentials (HTTP 401 or 403).
var ErrUnauthorized = errors.New("InfluxDB refused the credentials")

// authError explains a 401 or 403 from InfluxDB: it says what to set, since
// the same credentials will fail the same way until the agent restarts with
// others. Other errors are returned as they are.
func authError(err error, bucket string) error {
	var he *ihttp.Error
	if !errors.As(err, &he) || (he.StatusCode != 401 && he.StatusCode != 403) {
		return err
	}
	return fmt.Errorf("%w (HTTP %d: %v): give the agent KRM_INFLUX_TOKEN (or --influx-token) as user:password of an InfluxDB 1.8 user that may write and read database %q, or a 2.x token for bucket %q; the manifests take it from Secret krm-influxdb, key token",
		ErrUnauthorized, he.StatusCode, err, bucket, bucket)
}

// warnEvery limits write failure warnings while InfluxDB stays down; the
// failures in between are logged at debug level.
const warnEvery = time.Minute

// NewInfluxWriter returns a writer for cfg that logs to log and registers
// its metrics with reg (nil registers nothing). Nothing is written until
// Start runs.
func NewInfluxWriter(cfg InfluxConfig, log *slog.Logger, reg prometheus.Registerer) (*InfluxWriter, error) {
	cfg, err := cfg.complete()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	client := cfg.client()
	w := &InfluxWriter{
		cfg:    cfg,
		hc:     &http.Client{Timeout: cfg.Timeout},
		setUp:  !cfg.CreateUser,
		log:    log.With("url", cfg.URL, "bucket", cfg.Bucket),
		client: client,
		api:    client.WriteAPIBlocking(cfg.Org, cfg.Bucket),
		queue:  make(chan queued, cfg.BufferSize),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "krm_influx_points_written_total",
			Help: "Delay points written to InfluxDB.",
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "krm_influx_write_errors_total",
			Help: "Failed writes of a batch of delay points to InfluxDB.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "krm_influx_points_dropped_total",
			Help: "Delay points never written to InfluxDB, by reason: buffer_full (InfluxDB too slow), write_error (their batch failed) or unauthorized (InfluxDB refused the credentials).",
		}, []string{"reason"}),
	}
	// Make both reasons visible at zero.
	w.dropped.WithLabelValues(dropBufferFull)
	w.dropped.WithLabelValues(dropWriteError)
	w.dropped.WithLabelValues(dropUnauthorized)
	if w.written, err = register(reg, w.written); err != nil {
		client.Close()
		return nil, err
	}
	if w.writeErrors, err = register(reg, w.writeErrors); err != nil {
		client.Close()
		return nil, err
	}
	if w.dropped, err = register(reg, w.dropped); err != nil {
		client.Close()
		return nil, err
	}
	return w, nil
}

// Record queues the sample, or drops and counts it when the buffer is full.
func (w *InfluxWriter) Record(s Sample) {
	w.enqueue(queued{s: s})
}

// RecordUnmeasured queues a count of one unmeasured event received at at.
func (w *InfluxWriter) RecordUnmeasured(cluster, resource, event string, at time.Time) {
	w.enqueue(queued{s: Sample{Cluster: cluster, Resource: resource, Event: event, At: at}, unmeasured: true})
}

func (w *InfluxWriter) enqueue(q queued) {
	select {
	case w.queue <- q:
	default:
		w.dropped.WithLabelValues(dropBufferFull).Inc()
	}
}

// Start writes queued points until ctx is done, then writes what is left
// and closes the client. Once ctx is done it returns within about twice the
// configured Timeout: a write in progress is given Timeout to finish, and so
// is the final flush. Run it once. It returns nil: write failures are logged
// and counted, not returned.
func (w *InfluxWriter) Start(ctx context.Context) error {
	defer w.client.Close()
	tick := time.NewTicker(w.cfg.FlushInterval)
	defer tick.Stop()
	batch := make([]*write.Point, 0, w.cfg.BatchSize)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case q := <-w.queue:
			batch = append(batch, w.point(q))
			if len(batch) >= w.cfg.BatchSize {
				batch = w.flush(ctx, batch)
			}
		case <-tick.C:
			batch = w.flush(ctx, batch)
		}
	}
	w.shutdown(ctx, batch)
	return nil
}

// flush writes batch and returns it emptied. The write is not cut short
// when ctx ends: InfluxDB may have taken the points already, and writing
// them again at shutdown would count them twice.
func (w *InfluxWriter) flush(ctx context.Context, batch []*write.Point) []*write.Point {
	if len(batch) == 0 {
		return batch
	}
	ctx = context.WithoutCancel(ctx)
	w.account(ctx, len(batch), w.send(ctx, batch))
	clear(batch)
	return batch[:0]
}

// shutdown writes batch and the points queued now, in batches, all within
// Timeout.
func (w *InfluxWriter) shutdown(ctx context.Context, batch []*write.Point) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.Timeout)
	defer cancel()
	// Only what is queued now: under a steady stream of samples the queue
	// would never be empty.
	for n := len(w.queue); n > 0; n-- {
		batch = append(batch, w.point(<-w.queue))
	}
	for len(batch) > 0 {
		n := min(len(batch), w.cfg.BatchSize)
		w.account(ctx, n, w.send(ctx, batch[:n]))
		batch = batch[n:]
	}
}

func (w *InfluxWriter) send(ctx context.Context, batch []*write.Point) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	if !w.setUp {
		// InfluxDB may start after the agent: tried before each write
		// until it works.
		if err := setupInflux(ctx, w.hc, w.cfg); err != nil {
			return fmt.Errorf("writing %d delay points to InfluxDB: %w", len(batch), err)
		}
		w.setUp = true
		w.log.InfoContext(ctx, "InfluxDB set up: its admin user and the database exist")
	}
	if err := w.api.WritePoint(ctx, batch...); err != nil {
		return fmt.Errorf("writing %d delay points to InfluxDB: %w", len(batch), authError(err, w.cfg.Bucket))
	}
	return nil
}

// account counts and logs the outcome of writing n points.
func (w *InfluxWriter) account(ctx context.Context, n int, err error) {
	if err == nil {
		w.written.Add(float64(n))
		if w.failing > 0 {
			w.log.InfoContext(ctx, "InfluxDB writes recovered", "failedWrites", w.failing)
			w.failing = 0
		}
		return
	}
	w.writeErrors.Inc()
	reason, loud, msg := dropWriteError, slog.LevelWarn, "dropped delay points: InfluxDB write failed"
	if errors.Is(err, ErrUnauthorized) {
		reason, loud, msg = dropUnauthorized, slog.LevelError, "dropped delay points: InfluxDB refused the agent's credentials"
	}
	w.dropped.WithLabelValues(reason).Add(float64(n))
	w.failing++
	level := slog.LevelDebug
	if now := time.Now(); now.Sub(w.lastWarn) >= warnEvery {
		level = loud
		w.lastWarn = now
	}
	w.log.Log(ctx, level, msg, "points", n, "reason", reason, "consecutiveFailures", w.failing,
		"droppedMetric", "krm_influx_points_dropped_total", "err", err)
}

// point builds the InfluxDB point of q.
func (w *InfluxWriter) point(q queued) *write.Point {
	ts := q.s.At.UnixNano()
	if ts <= w.last && w.last-ts < int64(time.Millisecond) {
		ts = w.last + 1
	}
	w.last = max(w.last, ts)

	p := write.NewPointWithMeasurement(Measurement)
	if q.unmeasured {
		p = write.NewPointWithMeasurement(MeasurementUnmeasured)
	}
	// Line protocol has no empty tag values.
	for _, t := range [...]struct{ k, v string }{
		{"cluster", q.s.Cluster}, {"event", q.s.Event}, {"namespace", q.s.Namespace}, {"resource", q.s.Resource},
	} {
		if t.v != "" {
			p.AddTag(t.k, t.v)
		}
	}
	if q.unmeasured {
		p.AddField("count", int64(1))
	} else {
		p.AddField("delay_seconds", q.s.Delay.Seconds())
		// InfluxDB 1.x has no unsigned integers; etcd revisions are int64.
		p.AddField("resource_version", int64(q.s.ResourceVersion))
	}
	return p.SetTime(time.Unix(0, ts))
}
