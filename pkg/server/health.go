package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeText(w, http.StatusOK, "ok")
}

// readyz is 200 when the agent can serve every resource, with a sentence
// saying what it serves short of the best; 503 with why not.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	ok, why := s.backend.Ready()
	if !ok {
		writeText(w, http.StatusServiceUnavailable, why)
		return
	}
	if why == "" {
		why = "ok"
	}
	writeText(w, http.StatusOK, why)
}

func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(text))
}

// HealthHandler serves /healthz, /readyz and /metrics and nothing else:
// for kubelet's probes and Prometheus, on a listener that must carry no
// object data because anyone who reaches the pod reaches it. Metrics are
// counts and durations per resource and route, never object content.
func (s *Server) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.metricsHandler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeStatus(w, &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound,
			Message: fmt.Sprintf("%s is not served here: this listener serves only /healthz, /readyz and /metrics; read the cache through the API listener (kubectl krm, or kubectl krm proxy)", r.URL.Path),
		}})
	})
	return mux
}

func (s *Server) metricsHandler() http.Handler {
	g := s.opts.Gatherer
	if g == nil {
		g = prometheus.DefaultGatherer
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

// metrics counts and times requests. A nil *metrics records nothing.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	watches  prometheus.Gauge
	dropped  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, log *slog.Logger) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "krm_http_requests_total",
			Help: "HTTP requests served by the krm agent, by resource, route (list, get, watch, discovery, krm, write, health, denied: refused by --secure-listen's authentication or authorization, unmatched) and status code.",
		}, []string{"resource", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "krm_http_request_duration_seconds",
			Help: "Time to serve krm agent requests, by resource and route; for watches, how long the watch lasted.",
			// Lists of many thousand objects take longer than the
			// default buckets expect of an API call.
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"resource", "route"}),
	}
	m.watches = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "krm_watches",
		Help: "Watches being served now (at most --max-watches).",
	})
	m.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "krm_watches_dropped_total",
		Help: "Watches the agent ended because of their client, by resource and reason: write-timeout (a write blocked for the write timeout: the client stopped reading) or fell-behind (the watch fell further behind than its buffer of changes, 4,096 in krm-agent). A client that leaves is not counted.",
	}, []string{"resource", "reason"})
	m.requests = register(reg, m.requests, log)
	m.duration = register(reg, m.duration, log)
	m.watches = register(reg, m.watches, log)
	m.dropped = register(reg, m.dropped, log)
	return m
}

// register registers c, or reuses the collector already registered under
// the same name, so that two servers can share one registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C, log *slog.Logger) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	log.Warn("registering API metrics", "err", err)
	return c
}

func (m *metrics) observe(route, resource string, code int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(resource, route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(resource, route).Observe(d.Seconds())
}

// watchStarted and watchEnded keep krm_watches.
func (m *metrics) watchStarted() {
	if m != nil {
		m.watches.Inc()
	}
}

func (m *metrics) watchEnded() {
	if m != nil {
		m.watches.Dec()
	}
}

// Reasons a watch is dropped, in krm_watches_dropped_total.
const (
	dropWriteTimeout = "write-timeout"
	dropFellBehind   = "fell-behind"
)

func (m *metrics) watchDropped(resource, reason string) {
	if m != nil {
		m.dropped.WithLabelValues(resource, reason).Inc()
	}
}

// recorder remembers the status for the metrics, lets handlers name the
// route and resource they served, and bounds each write by a deadline.
type recorder struct {
	http.ResponseWriter
	status   int
	route    string
	resource string
	// rc sets the connection's write deadline; writeTimeout is how long
	// from each write, 0 for none.
	rc           *http.ResponseController
	writeTimeout time.Duration
}

func newRecorder(w http.ResponseWriter, route string, writeTimeout time.Duration) *recorder {
	return &recorder{ResponseWriter: w, route: route, rc: http.NewResponseController(w), writeTimeout: writeTimeout}
}

// extendDeadline lets the next write block at most writeTimeout. The
// server sets no WriteTimeout of its own, which would bound a whole
// response and so every watch.
func (r *recorder) extendDeadline() error {
	if r.writeTimeout <= 0 {
		return nil
	}
	if err := r.rc.SetWriteDeadline(time.Now().Add(r.writeTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// clearDeadline removes the deadline when the handler is done, so that it
// does not cut the next response on the same keep-alive connection.
func (r *recorder) clearDeadline() {
	if r.writeTimeout > 0 {
		_ = r.rc.SetWriteDeadline(time.Time{})
	}
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if err := r.extendDeadline(); err != nil {
		return 0, err
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the Flusher and deadlines.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) code() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

// label sets the metric labels of the request w serves. resource must be a
// cached resource's name or a fixed word: a name taken from the request
// would let anyone mint time series.
func label(w http.ResponseWriter, route, resource string) {
	if rec, ok := w.(*recorder); ok {
		rec.route, rec.resource = route, resource
	}
}
