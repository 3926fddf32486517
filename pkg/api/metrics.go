package api

import (
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics counts and times requests. A nil *metrics records nothing, so a
// server built without a registry needs no checks at each call.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer, log *slog.Logger) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "krm_http_requests_total",
			Help: "HTTP requests served by the krm API, by resource, route and status code.",
		}, []string{"resource", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "krm_http_request_duration_seconds",
			Help: "Time to serve krm API requests, by resource and route; for watches, how long the watch lasted.",
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
// the same name, so that two servers (e.g. in tests, or after a restart of
// the listener) can share one registry.
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
