package agent

import "github.com/prometheus/client_golang/prometheus"

// metrics are the agent's Prometheus series, per resource.
type metrics struct {
	events        *prometheus.CounterVec
	lists         *prometheus.CounterVec
	listSeconds   *prometheus.HistogramVec
	watchRestarts *prometheus.CounterVec
	forgotten     *prometheus.GaugeVec
	drift         *prometheus.CounterVec
	objects       *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "krm_events_total", Help: "Watch events received, by resource and type.",
		}, []string{"resource", "type"}),
		lists: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "krm_lists_total", Help: "Verifying LISTs, by resource and result (ok or error).",
		}, []string{"resource", "result"}),
		listSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "krm_list_duration_seconds", Help: "Time to run one paginated verifying LIST.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"resource"}),
		watchRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "krm_watch_restarts_total", Help: "Watches restarted, by resource and reason (closed: the server ended it; gone: 410; error; stalled: nothing, not even a bookmark, for --watch-stall-timeout, 150 s by default).",
		}, []string{"resource", "reason"}),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "krm_drift_objects_total", Help: "Objects whose event the stream missed, found by a LIST, by kind of miss.",
		}, []string{"resource", "kind"}),
		forgotten: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "krm_forgotten_deletions", Help: "Deleted objects whose tombstones were dropped since the last LIST, to bound memory while LISTs fail (their deletions are applied, but not in the drift report).",
		}, []string{"resource"}),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "krm_objects", Help: "Live objects cached, by resource and view.",
		}, []string{"resource", "view"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.events, m.lists, m.listSeconds, m.watchRestarts, m.forgotten, m.drift, m.objects} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
