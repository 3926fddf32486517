package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/krm-project/krm/pkg/agent"
	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/delay"
	"github.com/krm-project/krm/pkg/server"
	"github.com/krm-project/krm/test/cluster/clustertest"
	"github.com/krm-project/krm/test/watchproxy"
)

// measuringAgent is an agent that records stream delay, served with its
// delay statistics the way krm-agent serves them.
type measuringAgent struct {
	client  agentClient
	reg     *prometheus.Registry
	window  *delay.Window
	cluster string
	// stop stops the agent (and its InfluxDB writer) and waits for them.
	stop func()
}

// startMeasuringAgent is startAgent for delay tests: the agent records into
// a Recorder over a fresh Window, the delay metrics share the agent's
// registry, and /api/v1/delay is served from a delay.Source. With influx,
// samples are also written to InfluxDB by a running InfluxWriter, and the
// Source reads them back from there, tagged with the agent's unique cluster
// name.
func startMeasuringAgent(t *testing.T, cfg agent.Config, influx *delay.InfluxConfig) *measuringAgent {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	m := &measuringAgent{reg: reg, window: delay.NewWindow(0), cluster: "t-delay-" + rand.String(8)}
	src := &delay.Source{Window: m.window}

	ctx, cancel := context.WithCancel(t.Context())
	var writer *delay.InfluxWriter
	writerDone := make(chan error, 1)
	if influx != nil {
		var err error
		if writer, err = delay.NewInfluxWriter(*influx, log, reg); err != nil {
			t.Fatal(err)
		}
		if src.Influx, err = delay.NewInfluxReader(*influx, m.cluster); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(src.Influx.Close)
		// Cleanups run last first: the writer stops after the agent, and
		// writes what the agent recorded last.
		writerCtx, stopWriter := context.WithCancel(t.Context())
		go func() { writerDone <- writer.Start(writerCtx) }()
		t.Cleanup(func() {
			stopWriter()
			if err := <-writerDone; err != nil {
				t.Errorf("InfluxDB writer: %v", err)
			}
		})
	}
	rec, err := delay.NewRecorder(delay.RecorderOptions{Window: m.window, Registerer: reg, Influx: writer})
	if err != nil {
		t.Fatal(err)
	}
	cfg.ClusterName, cfg.Registry, cfg.Logger, cfg.Delay = m.cluster, reg, log, rec
	a, err := cfg.Complete()
	if err != nil {
		cancel()
		t.Fatalf("completing the agent's configuration: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Start(ctx) }()
	srv, ac, err := serve(a, reg, server.Options{Logger: log, Delay: src})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	m.client = ac
	var once sync.Once
	m.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
		})
	}
	// The agent and the writer log to the test's output, so they must have
	// stopped before the test ends.
	t.Cleanup(func() {
		srv.Close()
		m.stop()
	})
	eventually(t, 30*time.Second, "the agent to be ready", func(ctx context.Context) (string, error) {
		if err := m.client.Readyz(ctx); err != nil {
			return err.Error(), nil
		}
		return "", nil
	})
	return m
}

// totals returns what the window has recorded of resource's event since
// it was created.
func (m *measuringAgent) totals(resource, event string) delay.Totals {
	for _, tot := range m.window.Totals(resource, event) {
		return tot
	}
	return delay.Totals{Resource: resource, Event: event}
}

// waitTotals waits until the window has recorded at least count samples of
// resource's event.
func (m *measuringAgent) waitTotals(t *testing.T, resource, event string, count int64) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("%d %s %s delay samples", count, resource, event), func(context.Context) (string, error) {
		if got := m.totals(resource, event); got.Count < count {
			return fmt.Sprintf("the window has %+v", got), nil
		}
		return "", nil
	})
}

// recordedSample is one delay sample as the agent recorded it.
type recordedSample struct {
	At    time.Time // when the agent received the event
	Delay time.Duration
}

// recordedSamples returns the window's samples of resource's event in the
// order they were received. A Window gives statistics, not samples; a series
// of 1ns buckets (aligned to the Unix epoch) has one bucket per sample,
// starting at its receive time, whose maximum is its delay.
func recordedSamples(t *testing.T, w *delay.Window, resource, event string) []recordedSample {
	t.Helper()
	var out []recordedSample
	for _, p := range w.Series(time.Time{}, time.Nanosecond, resource, event) {
		if p.Count != 1 {
			t.Fatalf("%d %s %s samples were received at the same nanosecond, %s", p.Count, resource, event, p.At)
		}
		out = append(out, recordedSample{At: p.At, Delay: p.Max})
	}
	return out
}

// call is one API call the test made, timed on its side, and the timestamp
// the server gave the object (zero when the call does not return it).
type call struct {
	name       string
	start, end time.Time
	stamp      time.Time
}

// checkAgrees checks a sample of the event c caused against the test's own
// timing of c. The server stamped the object at some T in [c.start, c.end],
// truncated to the second: the stamp is in (c.start-1s, c.end]. The agent
// received the event at At, after T, and measured Delay = At - stamp. So
// Delay is in [At-c.end, At-c.start+1s) and at least 0, the stamp it implies
// (At-Delay) is a whole second, and At is after c.start and before
// observedBy, when the test read the samples.
func checkAgrees(t *testing.T, event string, c call, s recordedSample, observedBy time.Time) {
	t.Helper()
	lo := max(0, s.At.Sub(c.end))
	hi := s.At.Sub(c.start) + time.Second
	if s.Delay < lo || s.Delay >= hi {
		t.Errorf("%s %s: the agent measured %v; from the test's call (%s to %s) and the agent's receipt at %s it must be in [%v, %v)",
			event, c.name, s.Delay, c.start.Format(time.RFC3339Nano), c.end.Format(time.RFC3339Nano), s.At.Format(time.RFC3339Nano), lo, hi)
	}
	stamp := s.At.Add(-s.Delay)
	if !stamp.Equal(stamp.Truncate(time.Second)) {
		t.Errorf("%s %s: the agent's delay %v implies the timestamp %s, which is not a whole second", event, c.name, s.Delay, stamp.Format(time.RFC3339Nano))
	}
	if !c.stamp.IsZero() && !stamp.Equal(c.stamp) {
		t.Errorf("%s %s: the agent's delay implies the timestamp %s; the server gave %s", event, c.name, stamp.Format(time.RFC3339), c.stamp.Format(time.RFC3339))
	}
	if s.At.Before(c.start) || s.At.After(observedBy) {
		t.Errorf("%s %s: the agent received the event at %s, outside the test's call start %s and its reading of the samples at %s",
			event, c.name, s.At.Format(time.RFC3339Nano), c.start.Format(time.RFC3339Nano), observedBy.Format(time.RFC3339Nano))
	}
}

func delayPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			Containers:   []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
			NodeSelector: map[string]string{"type": "kwok"},
		},
	}
}

// createPods creates n pods one after the other and times each create.
func createPods(t *testing.T, cs kubernetes.Interface, ns, prefix string, n int) []call {
	t.Helper()
	calls := make([]call, 0, n)
	for i := range n {
		name := fmt.Sprintf("%s%02d", prefix, i)
		start := time.Now()
		pod, err := cs.CoreV1().Pods(ns).Create(t.Context(), delayPod(name), metav1.CreateOptions{})
		end := time.Now()
		if err != nil {
			t.Fatalf("creating pod %s: %v", name, err)
		}
		calls = append(calls, call{name: name, start: start, end: end, stamp: pod.CreationTimestamp.Time})
	}
	return calls
}

// TestDelayAgreesWithCallTimes creates and deletes pods one after the other
// while the agent watches them, timing each call, and checks every sample
// the agent recorded against the test's own timing: the 1-second resolution
// of object timestamps is the only slack. Creates are sequential, so the
// ADDED events, and the samples, come in the order of the calls; the deletes
// have no grace period, so each DELETED event follows its call at once and
// in order too, and its deletionTimestamp is the delete's own time.
func TestDelayAgreesWithCallTimes(t *testing.T) {
	t.Parallel()
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ag := startMeasuringAgent(t, agent.Config{RESTConfig: cfg, Resources: []string{"pods"}, Namespace: ns, VerifyInterval: time.Hour}, nil)

	const n = 30
	creates := createPods(t, cs, ns, "delay-", n)
	var deletes []call
	for _, cr := range creates {
		start := time.Now()
		err := cs.CoreV1().Pods(ns).Delete(t.Context(), cr.name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		end := time.Now()
		if err != nil {
			t.Fatalf("deleting pod %s: %v", cr.name, err)
		}
		deletes = append(deletes, call{name: cr.name, start: start, end: end})
	}
	ag.waitTotals(t, "pods", delay.Added, n)
	ag.waitTotals(t, "pods", delay.Deleted, n)
	observedBy := time.Now()

	want := []delay.Totals{{Resource: "pods", Event: delay.Added, Count: n}, {Resource: "pods", Event: delay.Deleted, Count: n}}
	if diff := cmp.Diff(want, ag.window.Totals("pods", "")); diff != "" {
		t.Fatalf("samples recorded (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		event string
		calls []call
	}{{delay.Added, creates}, {delay.Deleted, deletes}} {
		samples := recordedSamples(t, ag.window, "pods", tc.event)
		if len(samples) != len(tc.calls) {
			t.Fatalf("the window holds %d %s samples, want %d", len(samples), tc.event, len(tc.calls))
		}
		for i, s := range samples {
			checkAgrees(t, tc.event, tc.calls[i], s, observedBy)
		}
		if got := counterValue(t, ag.reg, "krm_stream_delay_unmeasured_total", map[string]string{"resource": "pods", "event": tc.event}); got != 0 {
			t.Errorf("krm_stream_delay_unmeasured_total{pods,%s} = %v, want 0", tc.event, got)
		}
		if got := histogramCount(t, ag.reg, "krm_stream_delay_seconds", map[string]string{"resource": "pods", "event": tc.event}); got != n {
			t.Errorf("krm_stream_delay_seconds{pods,%s} counts %d samples, want %d", tc.event, got, n)
		}

		// The API reports the same samples.
		rep, err := ag.client.Delay(t.Context(), "pods", tc.event, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Source != "memory" || rep.Resolution != delay.ResolutionNote || len(rep.Stats) != 1 {
			t.Fatalf("GET /api/v1/delay?resource=pods&event=%s = %+v, want one row from memory with the resolution note", tc.event, rep)
		}
		delays := make([]float64, 0, len(samples))
		for _, s := range samples {
			delays = append(delays, s.Delay.Seconds())
		}
		got := rep.Stats[0]
		wantStats := api.DelayStats{Resource: "pods", Event: tc.event, Count: n, Min: slices.Min(delays), Max: slices.Max(delays)}
		if diff := cmp.Diff(wantStats, got, cmpopts.IgnoreFields(api.DelayStats{}, "P50", "P90", "P99", "Mean")); diff != "" {
			t.Errorf("delay statistics served (-from the samples +served):\n%s", diff)
		}
	}
}

// histogramCount returns the sample count of the histogram name whose
// labels include labels.
func histogramCount(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) uint64 {
	t.Helper()
	var n uint64
	for _, m := range seriesOf(t, reg, name, labels) {
		n += m.GetHistogram().GetSampleCount()
	}
	return n
}

// influxCount counts the points of measurement's field in the database krm
// of the InfluxDB 1.8 at base whose tags equal tags, with InfluxQL: a query
// path independent of the Flux queries the agent's reader runs.
func influxCount(ctx context.Context, base, measurement, field string, tags map[string]string) (int64, error) {
	var where []string
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		where = append(where, fmt.Sprintf(`%q = '%s'`, k, strings.ReplaceAll(tags[k], `'`, `\'`)))
	}
	q := fmt.Sprintf(`SELECT count(%q) FROM %q WHERE %s`, field, measurement, strings.Join(where, " AND "))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/query?"+url.Values{"db": {"krm"}, "q": {q}}.Encode(), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Results []struct {
			Error  string `json:"error"`
			Series []struct {
				Values [][]any `json:"values"`
			} `json:"series"`
		} `json:"results"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, fmt.Errorf("%s: decoding the answer: %w", q, err)
	}
	if resp.StatusCode != http.StatusOK || len(body.Results) != 1 || body.Results[0].Error != "" {
		return 0, fmt.Errorf("%s: %s %+v", q, resp.Status, body)
	}
	if len(body.Results[0].Series) == 0 {
		return 0, nil // no points
	}
	v := body.Results[0].Series[0].Values
	if len(v) != 1 || len(v[0]) != 2 {
		return 0, fmt.Errorf("%s: unexpected answer %+v", q, v)
	}
	n, ok := v[0][1].(float64)
	if !ok {
		return 0, fmt.Errorf("%s: count is %T", q, v[0][1])
	}
	return int64(n), nil
}

// TestDelayInInfluxDB is the "done when": after 20 pods are created,
// the agent's delay API, reading InfluxDB, reports 20 ADDED samples of pods,
// and InfluxDB holds exactly 20 such points for the agent's cluster.
func TestDelayInInfluxDB(t *testing.T) {
	t.Parallel()
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	influx := delay.InfluxConfig{URL: c.InfluxURL, Bucket: "krm", FlushInterval: 100 * time.Millisecond}
	ag := startMeasuringAgent(t, agent.Config{RESTConfig: cfg, Resources: []string{"pods"}, Namespace: ns, VerifyInterval: time.Hour}, &influx)

	const n = 20
	createPods(t, cs, ns, "influx-", n)
	ag.waitTotals(t, "pods", delay.Added, n)
	tags := map[string]string{"cluster": ag.cluster, "resource": "pods", "event": delay.Added, "namespace": ns}
	eventually(t, 30*time.Second, fmt.Sprintf("%d points in InfluxDB", n), func(ctx context.Context) (string, error) {
		got, err := influxCount(ctx, c.InfluxURL, delay.Measurement, "delay_seconds", tags)
		if err != nil {
			return "", err
		}
		if got < n {
			return fmt.Sprintf("InfluxDB holds %d ADDED points of pods for cluster %s", got, ag.cluster), nil
		}
		return "", nil
	})
	if got, err := influxCount(t.Context(), c.InfluxURL, delay.Measurement, "delay_seconds", tags); err != nil || got != n {
		t.Errorf("InfluxDB holds %d ADDED points of pods for cluster %s (%v), want %d", got, ag.cluster, err, n)
	}

	rep, err := ag.client.Delay(t.Context(), "pods", delay.Added, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Source != "influxdb" || rep.Warning != "" {
		t.Fatalf("GET /api/v1/delay?resource=pods&event=ADDED came from %q (warning %q), want influxdb", rep.Source, rep.Warning)
	}
	// InfluxDB and the in-memory window hold the same samples: their
	// statistics agree (the mean to float rounding).
	mem, err := (&delay.Source{Window: ag.window}).Delay(t.Context(), api.DelayQuery{Resource: "pods", Event: delay.Added, Since: rep.Since, Step: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Stats) != 1 || rep.Stats[0].Count != n {
		t.Errorf("InfluxDB statistics = %+v, want one row counting %d", rep.Stats, n)
	}
	if diff := cmp.Diff(mem.Stats, rep.Stats, cmpopts.EquateApprox(0, 1e-6)); diff != "" {
		t.Errorf("statistics from memory (-) and from InfluxDB (+) differ:\n%s", diff)
	}
	var points int
	for _, p := range rep.Series {
		points += p.Count
	}
	if points != n {
		t.Errorf("the InfluxDB time series counts %d samples in %d buckets, want %d", points, len(rep.Series), n)
	}
}

// TestDelayWhileInfluxDBFails runs the agent with an InfluxDB that is down
// (nothing listens) or hangs (answers nothing) while pods churn. The agent
// must go on streaming and serving, measure every event, count the failed
// writes and dropped points, and serve delay statistics from memory with a
// warning.
func TestDelayWhileInfluxDBFails(t *testing.T) {
	t.Parallel()
	c := clustertest.Get(t)
	for _, tc := range []struct {
		name string
		url  func(t *testing.T) string
		// dropped is the reason points must have been dropped for.
		dropped string
	}{
		{"down", closedPortURL, "write_error"},
		{"slow", hangingServerURL, "buffer_full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := clustertest.Namespace(t, c)
			cfg, err := c.RESTConfig()
			if err != nil {
				t.Fatal(err)
			}
			dyn, err := dynamic.NewForConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ri := dyn.Resource(pods.gvr).Namespace(ns)
			// A small buffer and short timeouts, so that a hanging InfluxDB
			// fills the buffer within the churn.
			influx := delay.InfluxConfig{URL: tc.url(t), Bucket: "krm", FlushInterval: 50 * time.Millisecond,
				BatchSize: 5, BufferSize: 5, Timeout: 300 * time.Millisecond}
			ag := startMeasuringAgent(t, agent.Config{RESTConfig: cfg, Resources: []string{"pods"}, Namespace: ns, VerifyInterval: time.Hour}, &influx)

			const n = 40
			if err := churn(t.Context(), t, ri, pods, churnOptions{prefix: "influx-" + tc.name + "-", objects: n, workers: 4}); err != nil {
				t.Fatal(err)
			}
			waitMatchesList(t, 30*time.Second, ag.client, "pods", ri, "", "aggregated", "streamed")
			// The views reflect every event, and each was measured before it
			// was applied.
			if got := ag.totals("pods", delay.Added); got.Count != n || got.Unmeasured != 0 {
				t.Errorf("the agent recorded %+v, want all %d pods' ADDED measured", got, n)
			}

			eventually(t, 30*time.Second, "failed writes to be counted", func(context.Context) (string, error) {
				errs := counterValue(t, ag.reg, "krm_influx_write_errors_total", nil)
				dropped := counterValue(t, ag.reg, "krm_influx_points_dropped_total", map[string]string{"reason": tc.dropped})
				if errs == 0 || dropped == 0 {
					return fmt.Sprintf("krm_influx_write_errors_total = %v, krm_influx_points_dropped_total{reason=%q} = %v", errs, tc.dropped, dropped), nil
				}
				return "", nil
			})
			if written := counterValue(t, ag.reg, "krm_influx_points_written_total", nil); written != 0 {
				t.Errorf("krm_influx_points_written_total = %v with no InfluxDB to write to", written)
			}

			rep, err := ag.client.Delay(t.Context(), "pods", delay.Added, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Source != "memory" || !strings.Contains(rep.Warning, "InfluxDB failed") {
				t.Errorf("GET /api/v1/delay came from %q with warning %q, want memory and a warning that InfluxDB failed", rep.Source, rep.Warning)
			}
			if len(rep.Stats) != 1 || rep.Stats[0].Count != n {
				t.Errorf("statistics from memory = %+v, want one row counting %d", rep.Stats, n)
			}
		})
	}
}

// closedPortURL is the URL of a local port nothing listens on.
func closedPortURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// hangingServerURL is the URL of a server that accepts requests and never
// answers them.
func hangingServerURL(t *testing.T) string {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() {
		close(release)
		srv.Close()
	})
	return srv.URL
}

// TestReplayedEventsAreNotSamples keeps the agent's watch away while
// configmaps are created and deleted; when it comes back, the resumed watch
// replays those events. They describe changes made while the agent was away,
// so their delays would measure the outage: they must not be samples. A
// change made after the resume is one.
func TestReplayedEventsAreNotSamples(t *testing.T) {
	t.Parallel()
	c := clustertest.Get(t)
	ns := clustertest.Namespace(t, c)
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg, cs, ri := configMapClients(t, c, ns)
	proxy := watchproxy.New(t, cfg, nil)
	ag := startMeasuringAgent(t, agent.Config{
		RESTConfig: proxy.RESTConfig(), Resources: []string{"configmaps"}, Namespace: ns, VerifyInterval: time.Hour,
	}, nil)
	// The agent's only LIST landed before it was ready.
	listed := time.Now()
	ctx := t.Context()
	w := newConfigMapWriter(cs, ns)
	for i := range 3 {
		if err := w.create(ctx, fmt.Sprintf("before-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	ag.waitTotals(t, "configmaps", delay.Added, 3)

	proxy.Hold()
	proxy.Cut()
	eventually(t, 30*time.Second, "the agent to try to watch again", func(context.Context) (string, error) {
		if proxy.Held() == 0 {
			return "no watch held", nil
		}
		return "", nil
	})
	for i := range 5 {
		if err := w.create(ctx, fmt.Sprintf("during-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if err := w.remove(ctx, fmt.Sprintf("before-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// A watch started within a couple of seconds of a LIST counts what it
	// delivers as fresh (it replays nothing older than the LIST); this one
	// resumes well after the LIST.
	time.Sleep(time.Until(listed.Add(3 * time.Second)))
	proxy.Release()
	waitMatchesList(t, 30*time.Second, ag.client, "configmaps", ri, "", "aggregated", "streamed")
	if gone := counterValue(t, ag.reg, "krm_watch_restarts_total", map[string]string{"resource": "configmaps", "reason": "gone"}); gone > 0 {
		// Another test compacted etcd past the resume point: the agent
		// relisted instead of resuming. Listed objects are not samples
		// either, but the resume path went untested.
		t.Logf("the watch could not resume (410 Gone); the replay was a relist")
	}
	// ConfigMaps have no deletionTimestamp: a fresh DELETED of one is
	// counted as unmeasured, a replayed one not at all.
	want := []delay.Totals{{Resource: "configmaps", Event: delay.Added, Count: 3}}
	if diff := cmp.Diff(want, ag.window.Totals("configmaps", "")); diff != "" {
		t.Errorf("samples after the resumed watch replayed 5 ADDED and 2 DELETED (-want +got):\n%s", diff)
	}

	// Fresh again: the watch is back, and new changes are samples.
	if err := w.create(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	if err := w.remove(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	ag.waitTotals(t, "configmaps", delay.Added, 4)
	waitMatchesList(t, 30*time.Second, ag.client, "configmaps", ri, "", "aggregated", "streamed")
	want = []delay.Totals{{Resource: "configmaps", Event: delay.Added, Count: 4}, {Resource: "configmaps", Event: delay.Deleted, Unmeasured: 1}}
	if diff := cmp.Diff(want, ag.window.Totals("configmaps", "")); diff != "" {
		t.Errorf("samples after a change made once the watch was back (-want +got):\n%s", diff)
	}
}
