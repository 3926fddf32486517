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
	m.requests = register(reg, m.requests, log)
	m.duration = register(reg, m.duration, log)
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

// recorder remembers the status for the metrics and lets handlers name the
// route and resource they served.
type recorder struct {
	http.ResponseWriter
	status   int
	route    string
	resource string
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
